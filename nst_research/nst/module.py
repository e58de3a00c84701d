"""`StyleTransferModule`: a manual-optimisation LightningModule whose only trainable parameter is the image."""

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.optim import LBFGS, Optimizer
from torch.utils.data import DataLoader

from nst_research.atomic import write_atomic
from nst_research.errors import RunDiverged
from nst_research.nst.averaging import IterateAverage
from nst_research.nst.color import with_chroma
from nst_research.nst.images import save_image
from nst_research.nst.multiscale import resize_state
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.parameterizations import ImageParameterization, Pixels
from nst_research.nst.terms import Buffers
from nst_research.precision import LossScaler
from nst_research.tracking.loggers import log_images


class StyleTransferCheckpoint(TypedDict):
    """checkpoint.pt: what `resume` needs to continue a scale where the run stopped."""

    scale: int                         # which scale of the run's schedule
    scale_steps: int                   # steps taken at that scale
    run_step: int                      # steps taken in the whole run
    image: Tensor                      # the image being optimised (CPU)
    loss_evaluations: int
    initial_losses: dict[str, float]
    optimizer: dict[str, Any] | None   # Adam's or SGD's state; None for L-BFGS (its history is rebuilt)
    average: dict[str, Tensor] | None  # the iterate average's state, with ema_decay


class StepBoundaryInterrupt:
    """Inside it, Ctrl-C (SIGINT) takes effect at the start of the next step (`check`) or at the end, not in
    the middle of one: a step is never left half done, its image updated but its losses not yet logged, so
    a resumed run logs every step once. A second Ctrl-C stops at once. Only the main thread can do this;
    elsewhere Ctrl-C acts as usual."""

    def __init__(self) -> None:
        self.received = False
        self.previous: Any = None

    def __enter__(self) -> "StepBoundaryInterrupt":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum: int, frame: Any) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True

    def check(self) -> None:
        if self.received:
            self.received = False
            raise KeyboardInterrupt

    def __exit__(self, error_type: type | None, *args: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if error_type is None:
            self.check()


class StyleTransferModule(pl.LightningModule):
    """Optimises an image to minimise a `StyleTransferObjective` (Gatys et al., 2016).

    The optimizer steps the tensors of `parameterization` (the pixels by default; see
    `nst_research.nst.parameterizations`), and `image` is the image they make.

    One training batch is one optimizer step. L-BFGS steps through a closure (each call is one
    loss evaluation, counted); Adam and SGD take plain steps. The image is clamped to [0, 1]
    after every step, L-BFGS's too (as the PyTorch tutorial does): unconstrained, L-BFGS drifts
    out of range and the clamped result loses much of what it gained. Every `save_every` steps
    the image is written to `intermediate/` and to the loggers.

    One module runs one scale of a coarse-to-fine schedule: `step_offset` (the steps of the
    coarser scales) keeps logged steps and image names counting across the whole run. With
    `ema_decay`, the output is the moving average of the iterates (`IterateAverage`).

    A non-finite loss raises `RunDiverged` with the image reset to the last one whose loss was
    checked and finite. The loss is read on the host (a device synchronisation) only on logged
    steps (`trainer.log_every_n_steps`), so a GPU never waits on the other steps.

    `checkpoint_state()` (written as checkpoint.pt with every intermediate image) and `resume`
    continue a scale where an interrupted run stopped. `optimizer_state` starts the optimizer from the
    state of a coarser scale's (Adam's moments, resized to this scale), instead of from nothing.
    """

    def __init__(self, objective: StyleTransferObjective, content: Tensor, styles: list[Tensor],
                 blend: list[float], init: Tensor,
                 optimizer: Callable[[list[nn.Parameter]], Optimizer], iterations: int,
                 save_every: int, output_dir: Path, chroma: Tensor | None = None,
                 masks: list[Tensor] | None = None, step_offset: int = 0, ema_decay: float | None = None,
                 scale: int = 0, resume: StyleTransferCheckpoint | None = None,
                 parameterization: Callable[[Tensor], ImageParameterization] = Pixels,
                 optimizer_state: dict[str, Any] | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.objective = objective
        self.register_buffer("content", content, persistent=False)
        self.styles = Buffers({f"style_{i}": style for i, style in enumerate(styles)})  # buffers: moved, not trained
        self.blend = blend
        self.masks = None if masks is None else Buffers({f"mask_{i}": mask for i, mask in enumerate(masks)})
        self.parameterization = parameterization(init)
        self.optimizer_factory, self.iterations = optimizer, iterations
        self.save_every, self.output_dir = save_every, Path(output_dir)
        self.register_buffer("chroma", chroma, persistent=False)  # preserve_color=luminance: the content in RGB
        self.average = None if ema_decay is None else IterateAverage(self.image.detach(), ema_decay)
        self.scale, self.step_offset = scale, step_offset
        self.resumed_steps: int = resume["scale_steps"] if resume else 0  # this scale's steps before this module
        self.loss_evaluations: int = resume["loss_evaluations"] if resume else 0
        self.initial_losses: dict[str, float] = resume["initial_losses"] if resume else {}
        self.resumed_optimizer = resume.get("optimizer") if resume else optimizer_state
        if resume and self.average is not None and resume.get("average"):
            self.average.load_state_dict(resume["average"])
        self.last_good = self.snapshot()  # the latest checked iterate whose loss was finite
        self.interrupts: StepBoundaryInterrupt | None = None  # set while the task fits this module
        self.loss_scaler: LossScaler | None = None  # fp16's, made when fitting starts (in the objective's precision)

    def train_dataloader(self) -> DataLoader:
        """One item per optimizer step: Lightning needs a loader even when the data is one image."""
        return DataLoader(range(self.iterations), batch_size=None)

    @property
    def image(self) -> Tensor:
        """The image being optimised, as the objective sees it."""
        return self.parameterization()

    @property
    def image_size(self) -> list[int]:
        """The image's height and width at this scale (the content's, so the image need not be made)."""
        return list(self.content.shape[-2:])

    def configure_optimizers(self) -> Optimizer:
        parameters = list(self.parameterization.parameters())
        optimizer = self.optimizer_factory(parameters)
        if self.resumed_optimizer is not None:  # resumed, or carried from the coarser scale (resized)
            settings = [{key: value for key, value in group.items() if key != "params"}
                        for group in optimizer.param_groups]
            optimizer.load_state_dict(resize_state(self.resumed_optimizer, parameters))
            for group, configured in zip(optimizer.param_groups, settings, strict=True):
                group.update(configured)  # the state continues; the settings are this run's (a resume may change lr)
        return optimizer

    @property
    def run_step(self) -> int:
        """Steps taken in the whole run (all scales, and before a resume)."""
        return self.step_offset + self.resumed_steps + self.global_step

    @property
    def scale_steps(self) -> int:
        """Steps taken at this module's scale (before and after a resume)."""
        return self.resumed_steps + self.global_step

    def on_train_batch_start(self, batch: int, batch_idx: int) -> None:
        if self.interrupts is not None:  # a Ctrl-C during the last step stops the run here, between steps
            self.interrupts.check()

    def on_fit_start(self) -> None:
        self.loss_scaler = self.objective.precision.loss_scaler()
        masks = None if self.masks is None else list(self.masks.as_dict().values())
        self.objective.set_targets(self.content, list(self.styles.as_dict().values()), self.blend, masks)
        self.save_intermediate(self.run_step)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every loss term of the image as it would be saved (clamped to [0, 1]), in fp32 whatever the run's
        precision: results compare across precisions."""
        return {k: v.item() for k, v in self.objective(self.current_image().clamp(0, 1), exact=True).items()}

    def training_step(self, batch: int, batch_idx: int) -> None:
        optimizer = self.optimizers()
        last: dict[str, Tensor] = {}

        def closure() -> Tensor:
            optimizer.zero_grad()
            if self.loss_scaler is None:
                losses = self.compute_losses()
                self.manual_backward(losses["total"])
            else:  # fp16: the gradients of a scaled loss, unscaled
                losses = self.loss_scaler.backward(self.compute_losses, self.manual_backward,
                                                   list(self.parameterization.parameters()))
            if not self.initial_losses:  # the first evaluation is of the start image (in [0, 1]): its losses
                self.initial_losses = ({k: v.item() for k, v in losses.items()} if self.objective.precision.exact
                                       else self.evaluate())  # in fp32, as the final ones
            self.loss_evaluations += 1
            last.update(losses)
            return losses["total"]

        check = self.checks_loss(batch_idx)
        start = self.snapshot() if check else None  # the iterate whose loss the (first) closure call measures
        optimizer.step(closure=closure)
        if check:
            if not torch.isfinite(last["total"]):
                self.restore(self.last_good)
                message = f"the total loss became {last['total'].item()} at step {self.run_step}"
                raise RunDiverged(message, self.run_step)
            self.last_good = start
        with torch.no_grad():  # projected steps: pixels stay in [0, 1] for every optimizer
            image = self.image.clamp(0, 1)
            self.parameterization.assign(image)
        if self.average is not None:
            self.average.update(image)
        if check:  # only logged steps pay for Lightning's logging, as they alone read the loss on the host
            self.log_losses(last)

    def compute_losses(self) -> dict[str, Tensor]:
        """Every loss term of the image being optimised; the optimizer minimises its "total"."""
        return self.objective(self.image)

    def log_losses(self, losses: dict[str, Tensor]) -> None:
        """The step's losses and counters, to the progress bar and the loggers; called on the steps Lightning
        logs (every `trainer.log_every_n_steps`) and the last. Each value costs Lightning about half a
        millisecond of Python, which on a GPU can be longer than the step itself: the other steps log nothing."""
        self.log("loss", losses["total"].detach(), prog_bar=True, logger=False)
        self.log_dict({f"loss/{k}": v.detach() for k, v in losses.items()})
        self.log_dict({"loss_evaluations": float(self.loss_evaluations),
                       "scale/size": float(max(self.image_size)),
                       "step": float(self.run_step)})  # `step`: the x-axis across scales and resumes

    def checks_loss(self, batch_idx: int) -> bool:
        """Whether this step reads its loss on the host to check that it is finite: on the steps Lightning
        logs (every `trainer.log_every_n_steps`) and the last, so that no other step waits for the device."""
        return (batch_idx + 1) % self.trainer.log_every_n_steps == 0 or batch_idx + 1 == self.iterations

    def snapshot(self) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Copies of the image and of its average, to go back to if the loss turns out not finite."""
        average = None if self.average is None else {k: v.clone() for k, v in self.average.state_dict().items()}
        return self.image.detach().clone(), average

    @torch.no_grad()
    def restore(self, snapshot: tuple[Tensor, dict[str, Tensor] | None]) -> None:
        image, average = snapshot
        self.parameterization.assign(image)
        if average is not None:
            self.average.load_state_dict(average)

    def on_train_batch_end(self, outputs: object, batch: int, batch_idx: int) -> None:
        if self.run_step % self.save_every == 0 and self.global_step != self.iterations:
            self.save_intermediate(self.run_step, with_metrics=self.checks_loss(batch_idx))

    def current_image(self) -> Tensor:
        """The output in the network's space: the image, or the average of its iterates with `ema_decay`."""
        return self.image.detach() if self.average is None else self.average.get()

    def output_image(self) -> Tensor:
        """The image as the user sees it: with the content's chroma put back if only luminance was optimised."""
        image = self.current_image()
        if self.chroma is not None:
            image = with_chroma(image, self.chroma)
        return image.clamp(0, 1)

    def save_intermediate(self, step: int, with_metrics: bool = False) -> None:
        """The image to intermediate/ and the loggers (in the row of the step's losses when they are logged),
        and the checkpoint."""
        if self.trainer.is_global_zero:
            save_image(self.output_image(), self.output_dir / "intermediate" / f"step_{step:05d}.png")
            self.save_checkpoint()
            self.log_image("image", step, with_metrics)

    def checkpoint_state(self) -> StyleTransferCheckpoint:
        """What `resume` needs to continue this scale. L-BFGS's history (hundreds of image-sized
        vectors) is left out: a resumed L-BFGS rebuilds it within a few steps."""
        optimizer = self.optimizers().optimizer if self._trainer is not None else None
        return StyleTransferCheckpoint(
            scale=self.scale, scale_steps=self.scale_steps, run_step=self.run_step,
            image=self.image.detach().cpu(), loss_evaluations=self.loss_evaluations,
            initial_losses=self.initial_losses,
            optimizer=None if optimizer is None or isinstance(optimizer, LBFGS) else optimizer.state_dict(),
            average=None if self.average is None else self.average.state_dict(),
        )

    def save_checkpoint(self) -> None:
        state = self.checkpoint_state()
        write_atomic(self.output_dir / "checkpoint.pt", lambda f: torch.save(state, f))

    def log_image(self, key: str, step: int, with_metrics: bool = False) -> None:
        """Send the current image to the loggers that take images (W&B); `with_metrics`: into the row of the
        metrics logged next, at the same step."""
        log_images(self.loggers, key, [self.output_image().squeeze(0).cpu()], step, with_metrics)
