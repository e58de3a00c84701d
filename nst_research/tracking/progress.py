"""The console's progress bar for a run budgeted in optimizer steps rather than epochs."""

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, which for a step budget (`trainer.max_steps` with `max_epochs=-1`) counts
    the run's optimizer steps, `Step ━━━ 120/200`, rather than each epoch's batches under `Epoch 2/-2`. A budget
    in epochs keeps Lightning's own bar."""

    def by_steps(self) -> bool:
        return self.trainer.max_steps > 0 and self.trainer.max_epochs in (None, -1)

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self.by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self.by_steps():
            return super()._get_train_description(current_epoch)
        return f"{'Step':{len(self.validation_description)}}"  # as wide as "Validation": no flicker

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        if self.by_steps() and self.train_progress_bar_id is not None:
            return  # one bar for the whole run: Lightning would restart it at 0 each epoch
        super().on_train_epoch_start(trainer, *args)
        if self.by_steps():  # a resumed run starts where it stopped
            self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        done = trainer.global_step if self.by_steps() else batch_idx + 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)  # Lightning shows batch_idx + 1
