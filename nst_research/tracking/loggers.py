"""Loggers from the `logger` config group, with W&B that never crashes or blocks a run.

W&B runs online only with a login and a reachable server; otherwise it logs offline into the
run directory (upload later with `wandb sync`), and says why once. If even offline W&B
cannot start, the run goes on with its local CSV log. Under DDP only rank zero starts a W&B run.
"""

import netrc
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from nst_research.tracking.console import notice


def wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def has_wandb_login(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def can_reach(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def wandb_mode() -> tuple[str, str | None]:
    """('online' | 'offline' | 'disabled', why not online, or None when online)."""
    requested = os.environ.get("WANDB_MODE")
    if requested in ("offline", "disabled", "dryrun"):
        return ("offline" if requested == "dryrun" else requested), f"WANDB_MODE={requested}"
    host = wandb_host()
    if not has_wandb_login(host):
        return "offline", "no login found (run `wandb login` to log online)"
    if not can_reach(host):
        return "offline", f"cannot reach {host}"
    return "online", None


def restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def wandb_logger(**kwargs: Any) -> Logger | None:
    """A started `WandbLogger`: online when possible, else offline, else None (the run goes on).
    On DDP ranks other than zero, an idle one: Lightning's rank-zero guard keeps it from starting a run."""
    mode, reason = wandb_mode()
    if mode == "disabled":
        return None
    if rank_zero_only.rank != 0:  # one W&B run per training, not one per process
        return WandbLogger(**kwargs)
    requested = os.environ.get("WANDB_MODE")
    for offline in ([False, True] if mode == "online" else [True]):
        try:
            logger = WandbLogger(offline=offline, **kwargs)
            run = logger.experiment  # starts the run now, so failures surface here, not mid-run
        except Exception as error:  # W&B must never stop a run
            reason = f"W&B failed to start ({type(error).__name__}: {error})"
            continue
        finally:  # WandbLogger(offline=True) sets WANDB_MODE; the next job of a multirun decides afresh
            restore_env("WANDB_MODE", requested)
        if offline:
            notice(f"W&B: {reason}; logging offline to {run.dir.removesuffix('/files')} "
                   "(upload later with `wandb sync <that dir>`)")
        return logger
    notice(f"{reason}; continuing without W&B (losses are still logged locally)")
    return None


def instantiate_loggers(logger_cfg: Mapping[str, Any] | None) -> list[Logger]:
    """One logger per entry of the `logger` group; entries that yield None are skipped."""
    loggers = [instantiate(cfg) for cfg in (logger_cfg or {}).values() if cfg and "_target_" in cfg]
    return [logger for logger in loggers if logger is not None]


def finish_loggers(loggers: list[Logger], status: str = "success") -> None:
    """Flush every logger and end every W&B run (exit code 1 unless `status` is "success"),
    so the next job of a multirun starts its own."""
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)
