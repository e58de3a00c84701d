"""`StepTrace`: a callback that appends each step's end time and loss to a JSON-lines file, so that a
benchmark can time steps and find when a run reached a loss, through the run's own code path."""

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from nst_research.bench.measure import synchronize


class StepTrace(pl.Callback):
    """After every step, append {time, step, evaluations, size, loss} (`time.perf_counter()`, the run's step and
    loss evaluations, the logged `loss/total`: None on the steps that log nothing when
    `trainer.log_every_n_steps` > 1).

    A run that computes in other than fp32 logs losses in its own precision: at the final size its loss is
    measured in fp32 instead (`evaluate`, the image after the step as it would be saved), and the time that
    takes is left out of `time`, so that precisions are compared by the same loss at the run's own speed.

    With `target_loss`, stop once a step at `final_size` logs a loss at or below it; with `budget_s`,
    stop once `time.perf_counter()` passes `start + budget_s`.
    """

    def __init__(self, path: str, final_size: int | None = None, target_loss: float | None = None,
                 start: float | None = None, budget_s: float | None = None) -> None:
        self.path = Path(path)
        self.final_size, self.target_loss = final_size, target_loss
        self.deadline = None if start is None or budget_s is None else start + budget_s
        self.measuring_s = 0.0  # spent measuring losses in fp32, not counted in the run's time

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        synchronize(trainer.strategy.root_device)
        clock = time.perf_counter()
        now = clock - self.measuring_s
        size = max(module.image_size)
        loss = None
        if module.checks_loss(batch_idx):  # logged steps
            if module.objective.precision.exact or size != self.final_size:
                loss = trainer.callback_metrics["loss/total"].item()
            else:
                loss = module.evaluate()["total"]
                self.measuring_s += time.perf_counter() - clock
        with self.path.open("a") as f:
            f.write(json.dumps({"time": now, "step": module.run_step, "evaluations": module.loss_evaluations,
                                "size": size, "loss": loss}) + "\n")
        reached = None not in (self.target_loss, loss) and size == self.final_size and loss <= self.target_loss
        if reached or (self.deadline is not None and now > self.deadline):
            trainer.should_stop = True


def read_trace(path: Path) -> list[dict[str, float]]:
    """The trace's points; none if the run stopped before its first step ended."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
