"""`StyleTransferModule`: a manual-optimisation LightningModule whose only trainable parameter is the image."""

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.optim import LBFGS, Optimizer
from torch.utils.data import DataLoader

from nst_research.nst.averaging import IterateAverage
from nst_research.nst.color import with_chroma
from nst_research.nst.images import save_image
from nst_research.nst.objective import StyleTransferObjective, Targets


class StyleTransferModule(pl.LightningModule):
    """Optimises pixels to minimise a `StyleTransferObjective` (Gatys et al., 2016).

    One training batch is one optimizer step. L-BFGS steps through a closure (each call is one
    loss evaluation, counted); Adam and SGD take plain steps and are clamped to [0, 1] after
    each. Every `save_every` steps the image is written to `intermediate/` and to the loggers.

    One module runs one scale of a coarse-to-fine schedule: `step_offset` (the steps of the
    coarser scales) keeps logged steps and image names counting across the whole run. With
    `ema_decay`, the output is the moving average of the iterates (`IterateAverage`).
    """

    def __init__(self, objective: StyleTransferObjective, content: Tensor, styles: list[Tensor],
                 blend: list[float], init: Tensor,
                 optimizer: Callable[[list[nn.Parameter]], Optimizer], iterations: int,
                 save_every: int, output_dir: Path, chroma: Tensor | None = None,
                 masks: list[Tensor] | None = None, step_offset: int = 0, ema_decay: float | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.objective = objective
        self.register_buffer("content", content, persistent=False)
        self.styles = Targets({f"style_{i}": style for i, style in enumerate(styles)})  # buffers: moved, not trained
        self.blend = blend
        self.masks = None if masks is None else Targets({f"mask_{i}": mask for i, mask in enumerate(masks)})
        self.image = nn.Parameter(init.contiguous())  # L-BFGS flattens gradients with view(-1)
        self.optimizer_factory, self.iterations = optimizer, iterations
        self.save_every, self.output_dir = save_every, Path(output_dir)
        self.register_buffer("chroma", chroma, persistent=False)  # preserve_color=luminance: the content in RGB
        self.average = None if ema_decay is None else IterateAverage(self.image.detach(), ema_decay)
        self.step_offset = step_offset
        self.loss_evaluations = 0
        self.initial_losses: dict[str, float] = {}

    def train_dataloader(self) -> DataLoader:
        """One item per optimizer step: Lightning needs a loader even when the data is one image."""
        return DataLoader(range(self.iterations), batch_size=None)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory([self.image])

    def on_fit_start(self) -> None:
        masks = None if self.masks is None else list(self.masks.as_dict().values())
        self.objective.set_targets(self.content, list(self.styles.as_dict().values()), self.blend, masks)
        self.initial_losses = self.evaluate()
        self.save_intermediate(step=self.step_offset)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every loss term of the image as it would be saved (clamped to [0, 1])."""
        return {k: v.item() for k, v in self.objective(self.current_image().clamp(0, 1)).items()}

    def training_step(self, batch: int, batch_idx: int) -> None:
        optimizer = self.optimizers()
        last: dict[str, Tensor] = {}

        def closure() -> Tensor:
            optimizer.zero_grad()
            losses = self.objective(self.image)
            self.manual_backward(losses["total"])
            self.loss_evaluations += 1
            last.update(losses)
            return losses["total"]

        optimizer.step(closure=closure)
        if not isinstance(optimizer.optimizer, LBFGS):
            with torch.no_grad():
                self.image.clamp_(0, 1)
        if self.average is not None:
            self.average.update(self.image)
        self.log("loss", last["total"].detach(), prog_bar=True, logger=False)
        self.log_dict({f"loss/{k}": v.detach() for k, v in last.items()})
        self.log_dict({"loss_evaluations": float(self.loss_evaluations), "scale/size": float(max(self.image.shape[-2:])),
                       "step": float(self.step_offset + self.global_step)})  # `step`: the x-axis across scales

    def on_train_batch_end(self, outputs: object, batch: int, batch_idx: int) -> None:
        if self.global_step % self.save_every == 0 and self.global_step != self.iterations:
            self.save_intermediate(self.step_offset + self.global_step)

    def current_image(self) -> Tensor:
        """The output in the network's space: the image, or the average of its iterates with `ema_decay`."""
        return self.image.detach() if self.average is None else self.average.get()

    def output_image(self) -> Tensor:
        """The image as the user sees it: with the content's chroma put back if only luminance was optimised."""
        image = self.current_image()
        if self.chroma is not None:
            image = with_chroma(image, self.chroma)
        return image.clamp(0, 1)

    def save_intermediate(self, step: int) -> None:
        if self.trainer.is_global_zero:
            save_image(self.output_image(), self.output_dir / "intermediate" / f"step_{step:05d}.png")
            self.log_image("image", step)

    def log_image(self, key: str, step: int) -> None:
        """Send the current image to every logger that takes images (W&B)."""
        image = self.output_image().squeeze(0).cpu()
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=key, images=[image], step=step)
