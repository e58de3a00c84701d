"""One run's lifecycle, the same for every task: directory, config, loggers, timing, status, results.

    with RunLifecycle(output_dir, config, logger_nodes) as run:
        run.on_finish(lambda status, error: <save images, return the task's RunResults>)
        trainer.fit(...)

On entry it creates the run directory, writes `config.yaml` and starts the loggers (with the
experiment's settings as their hyper-parameters). On exit, however the block ends, it names the
status (`completed`, `interrupted` on Ctrl-C or SIGTERM, `diverged`, `failed`), asks the task for its
results (its `on_finish` callback, which saves what the run has so far), finishes every logger (every
W&B run ends, so the next job of a multirun starts its own) and writes `results.json`. Exceptions
propagate: the app turns them into the one-line message and the exit status.

A resumed run (its directory already holds a run) keeps its W&B run and the rows of its CSV log (see
`tracking.loggers`), and its wall time counts on from the previous results.json.
"""

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from nst_research.atomic import write_atomic
from nst_research.errors import RunDiverged, user_message
from nst_research.tracking.loggers import finish_loggers, instantiate_loggers, publish
from nst_research.tracking.results import RunResults, read_results, write_results

# Where a run writes, rather than what it is: left out of the loggers' hyper-parameters (config.yaml keeps all).
RUN_ONLY_KEYS = ("output_dir", "logger", "resume")
RUN_ONLY_NESTED = (("sweep", "dir"), ("sweep", "overrides"), ("metric", "cache_dir"))


def experiment_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a person compares runs by: the resolved config less where files were written."""
    clean = {key: value for key, value in config.items() if key not in RUN_ONLY_KEYS}
    for parent, key in RUN_ONLY_NESTED:
        if isinstance(clean.get(parent), Mapping):
            clean[parent] = {k: v for k, v in clean[parent].items() if k != key}
    return clean


def status_of(error: BaseException | None) -> str:
    if error is None:
        return "completed"
    if isinstance(error, KeyboardInterrupt | SystemExit):  # Ctrl-C; Lightning turns SIGTERM into SystemExit
        return "interrupted"
    return "diverged" if isinstance(error, RunDiverged) else "failed"


def error_message(error: BaseException | None) -> str | None:
    """The error as results.json and the console state it: a diverged run's message as it is, a crash
    with its exception type."""
    if error is None or isinstance(error, KeyboardInterrupt | SystemExit):
        return None
    return str(error) if isinstance(error, RunDiverged) else f"{type(error).__name__}: {user_message(error)}"


Finish = Callable[[str, str | None], RunResults]


class RunLifecycle:
    """A context manager that owns one run directory from its config to its results.json.

    `config` is the resolved config (plain containers), `loggers` the `logger` group's nodes.
    `primary` is False on the other processes of a multi-process (DDP) training: they log but do
    not write the run's files.
    """

    def __init__(self, output_dir: Path, config: Mapping[str, Any], loggers: Mapping[str, Any] | None, *,
                 task: str, primary: bool = True, started: float | None = None):
        self.output_dir, self.config, self.logger_nodes = Path(output_dir), config, loggers
        self.task, self.primary = task, primary
        self.previous = read_results(self.output_dir / "results.json")  # a resumed run's
        self.loggers: list = []
        self.results: RunResults | None = None
        self.finish: Finish = lambda status, error: RunResults(status=status, task=task, error=error)
        self.started = started
        self.start = 0.0
        self.stopped: float | None = None

    def on_finish(self, finish: Finish) -> None:
        """`finish(status, error)` saves the task's outcome so far and returns its results."""
        self.finish = finish

    @property
    def elapsed(self) -> float:
        """Seconds of this run, a resumed run's earlier sessions included: from its start (`started`, when given)
        to its end (`stop_clock`, when called)."""
        return (self.stopped or time.perf_counter()) - self.start + self.previous.get("wall_time_s", 0.0)

    def stop_clock(self) -> None:
        """End the run's time now (the runs of one batch share its time, whichever of them finishes first)."""
        self.stopped = time.perf_counter()

    def __enter__(self) -> "RunLifecycle":
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.primary:  # the config that makes this run from scratch: a resumed run's without `resume`
            saved = {**self.config, "resume": None} if "resume" in self.config else dict(self.config)
            text = yaml.safe_dump(saved, sort_keys=False)
            write_atomic(self.output_dir / "config.yaml", lambda f: f.write(text.encode()))
        self.loggers = instantiate_loggers(self.logger_nodes)
        hyperparameters = experiment_config(self.config)
        for logger in self.loggers:
            logger.log_hyperparams(hyperparameters)
        self.start = time.perf_counter() if self.started is None else self.started
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> bool:
        status, message = status_of(error), error_message(error)
        try:
            self.results = self.finish(status, message)
            self.results.wall_time_s = round(self.elapsed, 3)
            if self.primary:
                write_results(self.output_dir / "results.json", self.results)
                publish(self.loggers, self.output_dir, self.table_row(), self.results.result, self.results.artifacts())
        finally:
            finish_loggers(self.loggers, "success" if status == "completed" else "failed")
        return False  # the error, if any, goes on to the app

    def table_row(self) -> dict[str, Any]:
        """This run's row of the W&B results table: its name, the settings that vary in its sweep, its
        status, headline numbers, steps and time."""
        sweep = self.config.get("sweep") or {}
        settings = dict(item.split("=", 1) for item in sweep.get("differing", []) if "=" in item)
        results = self.results
        return {"run": sweep.get("name") or self.output_dir.name, **settings, "status": results.status,
                **results.headline(), "wall_time_s": results.wall_time_s}


def record_failure(output_dir: Path, config: Mapping[str, Any], loggers: Mapping[str, Any] | None, task: str,
                   error: str) -> None:
    """Record a multirun job that failed before its run started: results.json and a failed W&B run."""
    run = RunLifecycle(output_dir, config, loggers, task=task)
    run.on_finish(lambda status, _: RunResults(status="failed", task=task, error=error))
    with run:
        pass
