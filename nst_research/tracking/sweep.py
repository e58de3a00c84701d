"""Multirun bookkeeping: which jobs belong together, what differs between them, how many failed.

Every job of a multirun gets a `sweep` entry in its config (the sweep's directory, its W&B
group, the job's number and overrides); the W&B run is named after the overrides that differ
from the sweep's fixed ones (`optimizer=adam,style_weight=1e5`) and grouped by sweep. At the
end `MultirunSummary` counts the jobs' `results.json` statuses, says how many failed, and
makes the multirun's exit status non-zero when any did.
"""

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict


def sweep_overrides(sweep_dir: Path) -> list[str] | None:
    """The overrides the multirun was started with (`a=1,2 b=3`), from Hydra's `multirun.yaml`
    (None where the sweeper writes none, as Optuna's)."""
    path = sweep_dir / "multirun.yaml"
    return list(OmegaConf.load(path).hydra.overrides.task) if path.is_file() else None


def differing_overrides(overrides: list[str], fixed: list[str] | None, swept_keys: set[str]) -> list[str]:
    """The job's overrides that vary across the sweep: those not given verbatim for every job,
    and those of the sweeper's own parameters (`hydra.sweeper.params`)."""
    return [o for o in overrides
            if o.split("=", 1)[0].lstrip("+~") in swept_keys or (fixed is not None and o not in fixed)]


def sweep_group(sweep_dir: Path) -> str:
    """The W&B group of a sweep's runs: its directory's date and time (`2026-11-22_01-46-31-835772`)."""
    return f"{sweep_dir.parent.name}_{sweep_dir.name}"


def sweep_job(hydra_cfg: DictConfig) -> dict[str, Any] | None:
    """This job's place in its multirun (None for a single run)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hydra_cfg.sweep.dir)
    overrides = list(hydra_cfg.overrides.task)
    swept_keys = set((hydra_cfg.sweeper.get("params") or {}).keys())
    differing = differing_overrides(overrides, sweep_overrides(sweep_dir), swept_keys)
    return {
        "dir": str(sweep_dir),
        "group": sweep_group(sweep_dir),
        "job": hydra_cfg.job.num,
        "name": ",".join(differing) or f"job {hydra_cfg.job.num}",
        "overrides": overrides,
        "differing": differing,
    }


def with_sweep_job(cfg: DictConfig, job: dict[str, Any]) -> None:
    """Record `job` as `cfg.sweep`, and group and name the W&B run by it (unless set explicitly)."""
    with open_dict(cfg):
        cfg.sweep = job
        wandb = (cfg.get("logger") or {}).get("wandb")
        if wandb is not None:
            wandb.group = wandb.group or job["group"]
            wandb.name = wandb.name or job["name"]


class MultirunSummary(Callback):
    """At the end of a multirun: one line per failed job, a count, and exit status 1 if any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        paths = sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name))
        statuses = {path.parent.name: json.loads(path.read_text()) for path in paths}
        failed = {job: r for job, r in statuses.items() if r.get("status") != "completed"}
        for job, results in failed.items():
            error = results.get("error", "see its run directory")
            print(f"job {job} {results.get('status')}: {error}", file=sys.stderr)
        print(f"multirun: {len(statuses)} jobs, {len(failed)} failed; outputs in {sweep_dir} "
              f"(compare them: python scripts/compare.py {sweep_dir})")
        if failed:
            sys.exit(1)
