"""Loggers from the `logger` config group, with W&B that never crashes or blocks a run.

W&B runs online only with a login and a reachable server; otherwise it logs offline into the
run directory (upload later with `wandb sync`), and says why once (once for all the jobs of a multirun,
whichever process runs them); its own banners stay quiet
unless WANDB_SILENT=false. If even offline W&B cannot start, the run goes on with its local CSV
log. Under DDP only rank zero starts a W&B run.

Both loggers continue a resumed run where it is: W&B resumes the run found in the directory
(same id), and the CSV log keeps its earlier rows.
"""

import csv
import io
import netrc
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from nst_research.atomic import write_atomic
from nst_research.tracking.console import notice, notice_once
from nst_research.tracking.results import Artifact
from nst_research.tracking.sweep import SAID_MARKER


def wandb_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def wandb_address() -> tuple[str, int]:
    """The W&B server's host and port, from WANDB_BASE_URL: its own port, else its scheme's (80 for http)."""
    url = urlparse(wandb_url())
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def has_wandb_login(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """Whether the server at `url` (its scheme, host and port) answers HTTP within `timeout` seconds, with any
    status: a server that accepts connections and never answers does not count."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # refused, unknown host, timed out (URLError and socket timeouts are OSErrors)
        return False


def wandb_mode(timeout: float = 3.0) -> tuple[str, str | None]:
    """('online' | 'offline' | 'disabled', why not online, or None when online). The server must answer within
    `timeout` seconds."""
    requested = os.environ.get("WANDB_MODE")
    if requested in ("offline", "disabled", "dryrun"):
        return ("offline" if requested == "dryrun" else requested), f"WANDB_MODE={requested}"
    host, port = wandb_address()
    if not has_wandb_login(host):
        return "offline", "no login found (run `wandb login` to log online)"
    if not can_reach(wandb_url(), timeout):
        return "offline", f"no answer from {host}:{port} within {timeout:g} s"
    return "online", None


def restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def previous_run_id(save_dir: str | Path) -> str | None:
    """The id of the W&B run already logged in `save_dir` (a resumed run's), from its directory names
    (`wandb/offline-run-<time>-<id>` or `wandb/run-<time>-<id>`)."""
    runs = sorted(Path(save_dir, "wandb").glob("*run-*-*"), key=lambda p: p.name.removeprefix("offline-"))
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def wandb_logger(start_timeout: float = 10.0, **kwargs: Any) -> Logger | None:
    """A started `WandbLogger`: online when possible, else offline, else None (the run goes on).
    An online start that takes over `start_timeout` seconds (a server that never answers) gives up and logs
    offline, into a W&B run that `wandb sync` uploads later.
    On DDP ranks other than zero, an idle one: Lightning's rank-zero guard keeps it from starting a run.
    A directory that already holds a W&B run (a resumed run) continues that run, with the same id."""
    mode, reason = wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    if rank_zero_only.rank != 0:  # one W&B run per training, not one per process
        return WandbLogger(**kwargs)
    os.environ.setdefault("WANDB_SILENT", "true")  # our one notice instead of W&B's banners and summary
    if (run_id := previous_run_id(kwargs.get("save_dir", "."))) is not None:
        kwargs = {**kwargs, "id": run_id, "resume": "allow"}
    requested = os.environ.get("WANDB_MODE")
    folder = Path(kwargs.get("save_dir", "."), "wandb")
    for offline in ([False, True] if mode == "online" else [True]):
        earlier = set(folder.glob("*run-*"))
        start = {"mode": "offline"} if offline else {"settings": wandb.Settings(init_timeout=start_timeout)}
        try:
            logger = WandbLogger(offline=offline, **start, **kwargs)
            getattr(logger, "_wandb_init", {}).pop("anonymous", None)  # Lightning passes it; W&B warns about it
            run = logger.experiment  # starts the run now, so failures surface here, not mid-run
        except Exception as error:  # W&B must never stop a run
            reason = f"W&B failed to start ({type(error).__name__}: {first_line(str(error))})"
            for unstarted in set(folder.glob("*run-*")) - earlier:  # an empty folder whose id a resume would take
                shutil.rmtree(unstarted, ignore_errors=True)
            continue
        finally:  # WandbLogger(offline=True) sets WANDB_MODE; the next job of a multirun decides afresh
            restore_env("WANDB_MODE", requested)
        declare_metrics(run)
        if offline:
            offline_notice(reason, run.dir.removesuffix("/files"))
        return logger
    notice(f"{reason}; continuing without W&B (losses are still logged locally)")
    return None


def offline_notice(reason: str, run_dir: str) -> None:
    """Why W&B logs offline, and where: once for a single run; once for all the jobs of a multirun, naming them
    all (a marker file in the multirun's folder remembers that it was said)."""
    sweep = multirun_dir()
    if sweep is None:
        notice(f"W&B: {reason}; logging offline to {run_dir} (upload later with `wandb sync <that dir>`)")
        return
    notice_once(f"W&B: {reason}; logging each job offline into its own folder (upload later with "
                f"`wandb sync {sweep}/*/wandb/offline-run-*`)", sweep / SAID_MARKER)


def multirun_dir() -> Path | None:
    """The folder of the multirun this process runs a job of (Hydra's sweep.dir), or None."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir)


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


STEP_METRIC = "trainer/global_step"  # the x-axis: the run's step (across scales and resumes) as each task logs it
# Metrics whose W&B summary keeps their minimum beside the last value. Named one by one: W&B applies the
# first matching glob, and Lightning's WandbLogger has already declared `*` against the step metric.
SUMMARIZED = ("loss/total", "loss/content", "loss/style", "loss/tv", "train/d_loss", "train/g_loss",
              "val/frechet_distance", "train/total", "val/total", "eval/content", "eval/style", "eval/score",
              "eval/color")
SUMMARIZED_MAX = ("eval/content_ssim",)  # higher is better: summarised by the maximum


def declare_metrics(run: Any) -> None:
    """Tell W&B the step metric of the curves and summarise the losses (and the judge's distances) by their
    minimum and last value, the judge's SSIM by its maximum and last."""
    for name in SUMMARIZED:
        run.define_metric(name, step_metric=STEP_METRIC, summary="min,last")
    for name in SUMMARIZED_MAX:
        run.define_metric(name, step_metric=STEP_METRIC, summary="max,last")


def log_images(loggers: list[Logger], key: str, images: list[Any], step: int, with_metrics: bool = False) -> None:
    """Images to W&B at `step`. With `with_metrics`, the step's metrics are about to be logged: the images
    join their row, so that one step slider serves the media panel and the curves."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            row = {key: [wandb.Image(image) for image in images], STEP_METRIC: step}
            logger.experiment.log(row, commit=not with_metrics)


def publish(loggers: list[Logger], output_dir: Path, row: dict[str, Any], image: str | None,
            artifacts: list[Artifact]) -> None:
    """The run's row of the `results` W&B table (with its image) and its artifacts. W&B shows the rows of
    every run of a group in one table. Offline, artifact files are staged inside the run directory
    (WANDB_DATA_DIR), so that `wandb sync` from another machine carries them. Never stops a run."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        data_dir = os.environ.get("WANDB_DATA_DIR")
        try:
            import wandb

            run = logger.experiment
            picture = wandb.Image(str(output_dir / image)) if image and (output_dir / image).is_file() else None
            run.log({"results": wandb.Table(columns=[*row, "image"], data=[[*row.values(), picture]])})
            os.environ["WANDB_DATA_DIR"] = str(output_dir / "wandb" / "data")
            for spec in artifacts:
                files = [output_dir / name for name in spec.files if (output_dir / name).is_file()]
                if files:
                    artifact = wandb.Artifact(f"{spec.kind}-{run.id}", type=spec.kind)
                    for file in files:
                        artifact.add_file(str(file), name=file.name)
                    run.log_artifact(artifact, aliases=spec.aliases)
        except Exception as error:  # W&B must never stop a run
            notice(f"W&B: could not log the results table or artifacts ({type(error).__name__}: {error})")
        finally:
            restore_env("WANDB_DATA_DIR", data_dir)


class KeepingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv (a resumed run's) is kept: its rows
    before the first newly logged step stay, and the new rows follow. The file is left as it was until
    the first rows are saved, so a resume that fails early changes nothing."""

    def _check_log_dir_exists(self) -> None:
        self.kept: list[dict[str, str]] | None = None
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                reader = csv.DictReader(f)
                self.kept = list(reader)
                self.metrics_keys = list(reader.fieldnames or [])

    def save(self) -> None:
        if self.kept is None or not self.metrics:
            return super().save()
        first = min(row["step"] for row in self.metrics)
        rows = [row for row in self.kept if row.get("step") not in (None, "") and float(row["step"]) < first]
        self.kept = None
        self._record_new_keys()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(rows + self.metrics)
        write_atomic(Path(self.metrics_file_path), lambda f: f.write(out.getvalue().encode()))
        self.metrics = []


class KeepingCSVLogger(CSVLogger):
    """Lightning's `CSVLogger` with `KeepingExperimentWriter`: resuming a run appends to its CSV log."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeepingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


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
