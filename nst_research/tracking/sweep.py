"""Multirun bookkeeping: which jobs belong together, what differs between them, how many failed, and
what a search optimises.

Every job of a multirun gets a `sweep` entry in its config (the sweep's directory, its W&B
group, the job's number and overrides); the W&B run is named after the overrides that differ
from the sweep's fixed ones (`optimizer=adam,style_weight=1e5`) and grouped by sweep. At the
end `MultirunSummary` counts the jobs' `results.json` statuses, says how many failed, and
makes the multirun's exit status non-zero when any did. A search that optimises numbers of
results.json other than the task's own score names them in a `sweep_score` node (`ResultFields`);
a multi-objective search's `ParetoSet` writes the trials no other beats, and draws them.
"""

import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from nst_research.errors import UserInputError
from nst_research.tracking.results import lookup


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


SAID_MARKER = ".notice_said"  # in a multirun's folder while it runs: a notice for all its jobs was given


class QuietOptuna(Callback):
    """An Optuna search prints what Hydra already says (the study, each trial's overrides, the best parameters)
    and two kinds of noise: alembic's "setup plugin" lines, when Optuna loads it, and Optuna's own notices in
    colour codes. Before the sweeper loads Optuna, both are set to pass on warnings only, Optuna's in Hydra's
    plain format."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optuna" not in str(config.hydra.sweeper.get("_target_", "")):
            return
        logging.getLogger("alembic").setLevel(logging.WARNING)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()


class MultirunSummary(Callback):
    """At the end of a multirun: one line per failed job, a count, and exit status 1 if any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        (sweep_dir / SAID_MARKER).unlink(missing_ok=True)  # a later multirun into this folder says it again
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


class ResultFields:
    """What a sweeper optimises instead of the task's own score: numbers of the run's results.json named by their
    dotted paths (`eval.content`), one per direction of the search (`hydra.sweeper.direction`), as one number for
    one field and a list for several (what Hydra's Optuna sweeper takes). A run that did not complete scores +inf
    on each, the worst a minimised objective can be."""

    def __init__(self, fields: Sequence[str]):
        if not fields:
            raise UserInputError("sweep_score.fields names no field of results.json; give one per direction of "
                                 "the search, e.g. sweep_score.fields=[eval.content,eval.style]")
        self.fields = list(fields)

    def numbers(self, results: Mapping[str, Any]) -> list[float] | None:
        """The fields' values in `results` (NaN as +inf), or None when one is not a number."""
        values = [lookup(results, field.split(".")) for field in self.fields]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        return [math.inf if math.isnan(v) else float(v) for v in values]

    def __call__(self, results: Mapping[str, Any]) -> float | list[float]:
        if results.get("status") != "completed":
            return self.worst()
        values = self.numbers(results)
        if values is None:
            raise UserInputError(f"the search optimises {', '.join(self.fields)} (sweep_score.fields), but the run's "
                                 "results.json has no number there (is the run judged? judge=none leaves out eval)")
        return values[0] if len(values) == 1 else values

    def worst(self) -> float | list[float]:
        return math.inf if len(self.fields) == 1 else [math.inf] * len(self.fields)


class ParetoSet(Callback):
    """At the end of a multi-objective search: its Pareto set, the completed trials that no other trial beats on
    every one of `fields` (each minimised), written to pareto.json in the sweep directory with each trial's job,
    overrides and values; with two fields, also tradeoff.png: every completed trial in its colour, labelled by its
    overrides, and the front as a step line."""

    def __init__(self, fields: Sequence[str]):
        self.score = ResultFields(fields)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from nst_research.atomic import write_atomic
        from nst_research.tracking.compare import find_runs, pareto_front, run_color, tradeoff_figure

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            runs = find_runs(sweep_dir)
        except UserInputError:  # no trial finished
            return
        trials = [(index, run, values) for index, run in enumerate(runs) if run.results.get("status") == "completed"
                  and (values := self.score.numbers(run.results)) is not None]
        points = [values for _, _, values in trials]
        front = [trials[i] for i in pareto_front(points)]
        record = {"fields": self.score.fields, "trials": len(runs), "front": [
            {"job": run.directory.name, "overrides": run.overrides, "values": dict(zip(self.score.fields, values))}
            for _, run, values in front]}
        text = json.dumps(record, indent=2) + "\n"
        write_atomic(sweep_dir / "pareto.json", lambda f: f.write(text.encode()))
        drawn = ""
        if len(self.score.fields) == 2 and points:
            figure = tradeoff_figure([tuple(p) for p in points], [run.label for _, run, _ in trials],
                                     [run_color(index) for index, _, _ in trials], names=tuple(self.score.fields))
            write_atomic(sweep_dir / "tradeoff.png", lambda f: figure.savefig(f, format="png", dpi=100))
            drawn = " and tradeoff.png"
        print(f"Pareto set: {len(front)} of {len(runs)} trials beaten by none on {', '.join(self.score.fields)} "
              f"(pareto.json{drawn} in {sweep_dir})")
