"""`FeedForwardModule`: train an image transformation network to minimise a style-transfer objective.

Johnson et al. (2016): each training step stylises a batch of photographs in one forward pass and scores
the outputs with the objective: the content term against the batch's own photographs (their features,
computed without gradients at every step), the style term against the style image's statistics (computed
once at the start of fitting), TV. The gradient trains the network; the feature network stays frozen.

The objective has this interface: `set_styles(styles, blend)` (style targets, once), `set_content(images)`
(content targets for a batch), `objective(images) -> {"total": ..., "content": ..., "style": ..., "tv": ...,
"style/<layer>": ...}`.

Logged: `train/<term>` every step, `val/<term>` on the held-out images (the checkpoint callback can monitor
`val/total`), both at `step`, the optimizer steps taken; with a judge, `val/eval/<key>` at each validation, each
of the judge's numbers averaged over the held-out images' stylisations (`judged()`). Validation also runs after
the last step (the module asks the trainer to stop there, and Lightning validates a stopping step), so the final
network is always scored and checkpointed, whatever the validation interval. A grid of the held-out images (top
row) and their stylisations (bottom row) is saved as `samples/step_XXXXXX.png` at the start, every `sample_every`
steps and at the end, and sent to W&B in the row of that step's losses when they are logged; rank zero only.
Under mixed precision (`trainer.precision=bf16-mixed`) the training steps run in bf16 autocast; validation, the
grids, the judge and `evaluate()` run in fp32, so a network scores the same whatever precision trained it.
`initial_losses` are the held-out images' terms before training; `evaluate()` gives them at any time (the
final losses after fitting).

A checkpoint holds what `nst_research.feedforward.checkpoint` needs to rebuild the network alone: the
network's `_target_` node in `hyper_parameters["network"]`, its weights under `network.`. The objective is
not saved (its feature network would add tens of MB to every checkpoint): it is rebuilt from the config,
and its targets are recomputed when fitting resumes.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from nst_research.errors import RunDiverged
from nst_research.feedforward.checkpoint import NETWORK_KEY, build_network
from nst_research.judge.runs import RunJudge, metrics
from nst_research.nst.images import save_image
from nst_research.tracking.loggers import log_images

OptimizerFactory = Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]


class FeedForwardModule(pl.LightningModule):
    """A stylising network (built from `network`, a `_target_` node) trained on batches of photographs.

    `optimizer` makes the optimizer from the network's parameters (e.g. a partial of Adam). `styles` (each
    (1, 3, H, W) in [0, 1]) and `blend` set the style targets. `samples` (N, 3, H, W) are the held-out images
    of the sample grids and of `evaluate()`; `output_dir` (rank zero writes `samples/` there; None: no files);
    `judging` judges their stylisations, sample i against its reference `i` (None: not judged).
    """

    def __init__(self, network: Mapping[str, Any], objective: nn.Module, optimizer: OptimizerFactory,
                 styles: Sequence[Tensor], blend: Sequence[float], samples: Tensor, sample_every: int = 100,
                 output_dir: Path | str | None = None, judging: RunJudge | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({NETWORK_KEY: dict(network)})
        self.network = build_network(network)
        self.objective = objective
        self.optimizer_factory = optimizer
        self.blend = list(blend)
        self.style_count = len(styles)
        for i, style in enumerate(styles):  # buffers: moved with the module, not trained, not saved
            self.register_buffer(f"style_{i}", style, persistent=False)
        self.register_buffer("samples", samples, persistent=False)
        self.sample_every = sample_every
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.judging = judging  # not a submodule: not saved in checkpoints
        self.initial_losses: dict[str, float] = {}
        self.last_sample_step: int | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.network.parameters())

    def forward(self, images: Tensor) -> Tensor:
        return self.network(images)

    def styles(self) -> list[Tensor]:
        return [getattr(self, f"style_{i}") for i in range(self.style_count)]

    def losses(self, images: Tensor) -> dict[str, Tensor]:
        """Every term of the objective for the stylised `images`, with the images themselves as content."""
        with torch.no_grad():
            self.objective.set_content(images)
        return self.objective(self.network(images))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every term for the held-out images (as one batch), in fp32 as validation."""
        was_training = self.network.training
        self.network.eval()
        with torch.autocast(self.device.type, enabled=False):
            losses = {key: value.item() for key, value in self.losses(self.samples).items()}
        self.network.train(was_training)
        return losses

    def on_fit_start(self) -> None:
        with torch.no_grad():
            self.objective.set_styles(self.styles(), self.blend)
        if not self.initial_losses:  # a new run (a resumed one has them from its checkpoint)
            self.initial_losses = self.evaluate()
            self.save_samples()

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        total = losses["total"]
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0 and not torch.isfinite(total):
            raise RunDiverged(f"the training loss became {total.item()} at step {self.global_step + 1}; "
                              "lower the learning rate or the style weight", self.global_step + 1)
        values = {f"train/{key}": value.detach() for key, value in losses.items()}
        values["step"] = float(self.global_step + 1)  # the x-axis: steps taken, as in the grids' names
        self.log_dict(values, sync_dist=True, batch_size=len(batch))
        return total

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """The held-out images' terms, in fp32 whatever the run's mixed precision: the same network scores the
        same, and `val/total` compares with the initial and final losses and across precisions."""
        with torch.autocast(self.device.type, enabled=False):
            losses = self.losses(batch)
        values = {f"val/{key}": value for key, value in losses.items()}
        values["step"] = float(self.global_step)
        self.log_dict(values, on_epoch=True, sync_dist=True, batch_size=len(batch))

    @torch.no_grad()
    def judged(self) -> dict[str, float] | None:
        """The judge's numbers for the held-out images' stylisations, each averaged over the images."""
        if self.judging is None:
            return None
        self.judging.judge.to(self.device)
        return self.judging.mean_score(self.stylised(), range(len(self.samples)))

    def on_validation_epoch_end(self) -> None:
        scores = self.judged()
        if scores is not None:
            self.log_dict(metrics(scores, "val/"), sync_dist=True)

    def on_train_batch_end(self, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        if self.global_step % self.sample_every == 0:  # Lightning logs this step's losses next, if it logs them
            self.save_samples(with_metrics=self.global_step % self.trainer.log_every_n_steps == 0)
        if self.is_last_step(batch_idx):
            self.trainer.should_stop = True  # Lightning then validates after this step

    def is_last_step(self, batch_idx: int) -> bool:
        """This step reaches `max_steps`, or ends the last of `max_epochs`."""
        trainer = self.trainer
        if trainer.max_steps >= 0 and self.global_step >= trainer.max_steps:
            return True
        epochs = trainer.max_epochs
        last_epoch = epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs
        return last_epoch and batch_idx + 1 >= trainer.num_training_batches

    def on_train_end(self) -> None:
        if self.last_sample_step != self.global_step:
            self.save_samples()

    @torch.no_grad()
    def stylised(self) -> Tensor:
        """The network's stylisations of the held-out images, in fp32 as `scripts/stylize.py` makes them (the
        grids and the judge see what a user will get)."""
        was_training = self.network.training
        self.network.eval()
        with torch.autocast(self.device.type, enabled=False):
            stylised = self.network(self.samples)
        self.network.train(was_training)
        return stylised

    def sample_grid(self) -> Tensor:
        """The held-out images (top row) above the network's stylisations (bottom row), in [0, 1]."""
        return make_grid(torch.cat([self.samples, self.stylised()]), nrow=len(self.samples), padding=2, pad_value=1.0)

    def save_samples(self, with_metrics: bool = False) -> None:
        """Save the grid as samples/step_XXXXXX.png and send it to W&B (`with_metrics`: into the row of the losses
        logged next); rank zero only."""
        if self.output_dir is None or not self.trainer.is_global_zero:
            return
        grid = self.sample_grid().cpu()
        save_image(grid, self.output_dir / "samples" / f"step_{self.global_step:06d}.png")
        log_images(self.loggers, "samples", [grid], self.global_step, with_metrics)
        self.last_sample_step = self.global_step

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {key: value for key, value in checkpoint["state_dict"].items()
                                    if not key.startswith("objective.")}
        checkpoint["feedforward"] = {"initial_losses": self.initial_losses}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The objective's own state (not saved) is kept as built, so that strict loading finds every key."""
        objective = self.objective.state_dict()
        checkpoint["state_dict"].update({f"objective.{key}": value for key, value in objective.items()})
        self.initial_losses = checkpoint.get("feedforward", {}).get("initial_losses", {})
