"""`StepMarks`: a callback that notes when a run's first step starts and its last step ends, for the
start-up benchmark (`nst_research.bench.startup`)."""

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from nst_research.bench.startup import mark


class StepMarks(pl.Callback):
    """At the end of fit, write {"first_step_start", "last_step_end", "steps"} to `path`, in `time.monotonic()`
    seconds (on Linux one clock for every process of the machine, so the benchmark compares them with a
    process's start and end). A traced process (`startup.traced_child`) also learns when the steps begin and end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.first: float | None = None
        self.last: float | None = None
        self.steps = 0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.first is None:
            self.first = mark("steps")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps += 1
        if batch_idx + 1 == trainer.num_training_batches:
            self.last = mark("after")

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.path.write_text(json.dumps({"first_step_start": self.first, "last_step_end": self.last,
                                         "steps": self.steps}))
