"""`GANModule`: alternating discriminator and generator updates with Lightning's manual optimisation.

Each training batch is one discriminator step; every `d_steps`-th batch is also one generator step
(so `d_steps=5` is WGAN-GP's five critic updates per generator update, each on its own real batch).
A grid of samples from one fixed noise batch is saved every `sample_every` generator steps; each
validation scores samples from another fixed noise batch with the Frechet distance, precision, recall,
density and coverage (`SampleMetrics`). Under DDP, rank zero alone saves the grids and scores the
metrics (on the whole validation set, as on one device) and shares the values with the other processes.
Under mixed precision (`trainer.precision=bf16-mixed`) the training steps run in autocast, with the losses
reduced in fp32; the grids and the metrics' samples and features are made in fp32.
"""

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from nst_research.gan.losses import GANLoss, gradient_penalty, r1_penalty
from nst_research.gan.metric import SampleMetrics
from nst_research.tracking.loggers import log_images

OptimizerFactory = Callable[..., torch.optim.Optimizer]
METRIC_KEY = "val/frechet_distance"
GENERATOR_KEY = "generator"  # a checkpoint's generator node and noise (nst_research.gan.samples reads them)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Inside, `module`'s parameters get no gradient (inputs still get theirs through it)."""
    parameters = [p for p in module.parameters() if p.requires_grad]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def sample_noise(shape: tuple[int, ...], distribution: str, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Tensor:
    """Noise: `uniform` on (-1, 1) or standard `normal`."""
    if distribution == "uniform":
        return torch.rand(shape, generator=generator, device=device) * 2 - 1
    if distribution == "normal":
        return torch.randn(shape, generator=generator, device=device)
    raise ValueError(f"noise distribution {distribution!r}: choose uniform or normal")


def at_least_fp32(x: Tensor) -> Tensor:
    """`x` in fp32 when it is in 16 bits (an output under mixed precision); fp32 and fp64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def generate(generator: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    """G(z), or G(z, y) for a conditional generator."""
    return generator(z) if labels is None else generator(z, labels)


class GANModule(pl.LightningModule):
    """A generator and a discriminator trained against each other with `loss` (see `nst_research.gan.losses`).

    `metric` (optional) scores samples against real images whose features `set_reference` computes once.
    `ema_decay` (optional, e.g. 0.999) keeps an exponential moving average of the generator's weights
    (Yazici et al., 2019), updated after every generator step; the grids and the metrics use it, and it is
    saved in checkpoints (`generator_ema.*`). `augment` (optional, e.g. `DiffAugment`) transforms every
    image the discriminator sees, real and generated, penalties included. `generator_config` (the
    generator's `_target_` node) is saved in checkpoints with the noise distribution, so that the generator
    can be rebuilt without the run's config. A conditional generator
    (`num_classes` set) is asked for random classes in training, balanced ones for the metrics (which then
    include `class_accuracy`) and one class per row in the grids; an `acgan` discriminator's class logits
    add a cross-entropy (train/class_loss) to both networks' losses (Odena et al., 2017).
    Logged: train/d_loss, train/g_loss, train/d_real and train/d_fake (mean D(x) and D(G(z)): a
    probability for bce, the raw score otherwise), train/gradient_penalty (wgan_gp, or any loss given a
    gradient penalty weight), train/r1_penalty (a loss with `r1_weight`), val/frechet_distance,
    val/precision, val/recall, val/density and val/coverage. The training values reach Lightning only on
    the steps it logs; `final_losses` gives the last batch's.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: GANLoss,
                 generator_optimizer: OptimizerFactory, discriminator_optimizer: OptimizerFactory, *,
                 noise: str = "uniform", d_steps: int = 1, gradient_clip_val: float | None = None,
                 gradient_clip_algorithm: str = "norm", sample_every: int = 100, grid_size: int = 64,
                 output_dir: Path | None = None, metric: SampleMetrics | None = None,
                 noise_seed: int = 0, ema_decay: float | None = None, augment: nn.Module | None = None,
                 generator_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"gan.ema_decay={ema_decay} must be between 0 and 1 (e.g. 0.999), or null for none")
        self.generator, self.discriminator, self.loss = generator, discriminator, loss
        self.ema_decay, self.augment = ema_decay, augment
        self.generator_ema = None if ema_decay is None else copy.deepcopy(generator).requires_grad_(False)
        self.num_classes = getattr(generator, "num_classes", None)
        self.generator_config = generator_config
        self.optimizer_factories = (discriminator_optimizer, generator_optimizer)
        self.noise, self.d_steps, self.sample_every = noise, d_steps, sample_every
        self.gradient_clip_val, self.gradient_clip_algorithm = gradient_clip_val, gradient_clip_algorithm
        self.output_dir, self.metric = output_dir, metric
        self.automatic_optimization = False
        self.generator_steps = self.discriminator_steps = 0
        self.last_outputs: dict[str, Tensor] = {}  # the last batch's losses and raw D outputs
        fixed = torch.Generator().manual_seed(noise_seed)
        # conditional: one class per row, as many samples of each as fit in grid_size
        self.grid_columns = int(grid_size**0.5) if self.num_classes is None else max(1, grid_size // self.num_classes)
        labels = None if self.num_classes is None else torch.arange(self.num_classes).repeat_interleave(
            self.grid_columns)
        self.register_buffer("grid_labels", labels, persistent=False)
        self.register_buffer("grid_noise", sample_noise((grid_size if labels is None else len(labels),
                                                         generator.noise_dim), noise, fixed), persistent=False)
        self.metric_seed = noise_seed + 1

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        make_d, make_g = self.optimizer_factories
        return [make_d(self.discriminator.parameters()), make_g(self.generator.parameters())]

    @property
    def sampler(self) -> nn.Module:
        """The generator that makes the grids and is scored: the moving average when there is one."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return generate(self.sampler, z, labels)

    def random_labels(self, n: int) -> Tensor | None:
        return None if self.num_classes is None else torch.randint(self.num_classes, (n,), device=self.device)

    def critic(self, images: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The discriminator's scores of `images` (of classes `labels` when conditional), augmented first when
        the run augments, and its class logits (an `acgan` discriminator's; None otherwise). The scores are
        fp32 under mixed precision, so that the losses and the logged D(x) are reduced in fp32."""
        images = images if self.augment is None else self.augment(images)
        if self.num_classes is None:
            return at_least_fp32(self.discriminator(images)), None
        out = self.discriminator(images, labels)
        scores, classes = out if isinstance(out, tuple) else (out, None)
        return at_least_fp32(scores), classes

    @torch.no_grad()
    def update_ema(self) -> None:
        """average <- decay * average + (1 - decay) * weights; buffers (batch-norm statistics) copied."""
        for average, weight in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            average.lerp_(weight, 1 - self.ema_decay)
        for average, buffer in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            average.copy_(buffer)

    def random_noise(self, n: int) -> Tensor:
        return sample_noise((n, self.generator.noise_dim), self.noise, device=self.device)

    def step(self, optimizer: LightningOptimizer, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        optimizer.step()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        real = batch[0]
        labels = None if self.num_classes is None else batch[1]
        fake_labels = self.random_labels(real.shape[0])
        d_opt, g_opt = self.optimizers()
        generator_step = (batch_idx + 1) % self.d_steps == 0
        with torch.set_grad_enabled(generator_step):  # G's graph only when G learns from this batch
            fake = generate(self.generator, self.random_noise(real.shape[0]), fake_labels)
        (real_out, real_classes), (fake_out, fake_classes) = self.critic(real, labels), self.critic(fake.detach(),
                                                                                                    fake_labels)
        d_loss = self.loss.discriminator(real_out, fake_out)
        outputs = {"d_loss": d_loss, "real_out": real_out, "fake_out": fake_out}
        if real_classes is not None:  # ACGAN: D names the class of real and generated images
            outputs["class_loss"] = F.cross_entropy(real_classes, labels) + F.cross_entropy(fake_classes, fake_labels)
            d_loss = d_loss + outputs["class_loss"]

        def score(images: Tensor) -> Tensor:  # the penalties' view of D: the scores of real images' classes
            return self.critic(images, labels)[0]

        if self.loss.gradient_penalty_weight:
            outputs["gradient_penalty"] = gradient_penalty(score, real, fake)
            d_loss = d_loss + self.loss.gradient_penalty_weight * outputs["gradient_penalty"]
        if self.loss.r1_weight:
            outputs["r1_penalty"] = r1_penalty(score, real)
            d_loss = d_loss + self.loss.r1_weight / 2 * outputs["r1_penalty"]
        self.step(d_opt, d_loss)
        self.discriminator_steps += 1
        if generator_step:
            with frozen(self.discriminator):  # the gradient flows through D to G; D's weights need none
                fake_out, fake_classes = self.critic(fake, fake_labels)
                outputs["g_loss"] = self.loss.generator(fake_out)
                if fake_classes is not None:  # ACGAN: G makes images that D names as the class asked for
                    outputs["g_loss"] = outputs["g_loss"] + F.cross_entropy(fake_classes, fake_labels)
                self.step(g_opt, outputs["g_loss"])
            if self.generator_ema is not None:
                self.update_ema()
            self.generator_steps += 1
            if self.output_dir is not None and self.generator_steps % self.sample_every == 0:
                self.save_samples(Path(self.output_dir) / "samples" / f"step_{self.generator_steps:06d}.png")
        self.last_outputs.update({key: value.detach() for key, value in outputs.items()})
        if self.logs_this_step():  # `step`: the x-axis of every curve is the generator step
            self.log_dict({**self.training_values(), "step": float(self.generator_steps)}, sync_dist=True)

    def logs_this_step(self) -> bool:
        """Whether Lightning logs this training batch: every `trainer.log_every_n_steps`-th, counted across
        epochs as Lightning counts them. The values are handed to Lightning only then, since its
        bookkeeping costs per value and step."""
        every = self.trainer.log_every_n_steps
        return every > 0 and self.discriminator_steps % every == 0

    def training_values(self) -> dict[str, Tensor]:
        """The last step's values as logged: train/d_loss, train/d_real and train/d_fake (mean D(x) and
        D(G(z)) as the loss reads them), train/gradient_penalty and train/r1_penalty (when the loss has them), and
        train/g_loss once G has stepped."""
        last = self.last_outputs
        values = {"train/d_loss": last["d_loss"], "train/d_real": self.loss.score(last["real_out"]).mean(),
                  "train/d_fake": self.loss.score(last["fake_out"]).mean()}
        values.update({f"train/{key}": last[key] for key in ("gradient_penalty", "r1_penalty", "class_loss", "g_loss")
                       if key in last})
        return values

    def final_losses(self) -> dict[str, float]:
        """The last training batch's values: d_loss, g_loss, d_real, d_fake (and the penalties)."""
        if not self.last_outputs:
            return {}
        return {key.removeprefix("train/"): value.item() for key, value in self.training_values().items()}

    def samples(self) -> Tensor:
        """The grid of samples from the fixed noise batch, as an image in [0, 1]; in fp32 whatever the run's
        mixed precision, as the metrics' samples."""
        sampler = self.sampler
        was_training = sampler.training
        sampler.eval()
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            images = generate(sampler, self.grid_noise, self.grid_labels)
        sampler.train(was_training)
        return make_grid(images, nrow=self.grid_columns, normalize=True, value_range=(-1, 1), pad_value=1)

    def save_samples(self, path: Path) -> None:
        """Save the grid to `path` and send it to loggers that take images (W&B); rank zero only."""
        if not self.trainer.is_global_zero:
            return
        grid = self.samples()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        log_images(self.loggers, "samples", [grid.cpu()], self.generator_steps)

    def set_reference(self, real: Tensor) -> None:
        """Compute the real images' features once; every validation compares samples with them."""
        self.metric.set_reference(real)

    def on_validation_epoch_start(self) -> None:
        self.metric_noise = torch.Generator().manual_seed(self.metric_seed)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """Score as many samples as the batch holds reals, from the same fixed noise at every validation.
        Rank zero only: every process sees the whole validation set, so rank zero's value is a one-device run's.
        The samples are made in fp32 whatever the run's mixed precision: the same weights score the same."""
        if self.metric is None or not self.trainer.is_global_zero:
            return
        n = batch[0].shape[0]
        noise = sample_noise((n, self.generator.noise_dim), self.noise, self.metric_noise).to(self.device)
        with torch.autocast(self.device.type, enabled=False):
            if self.num_classes is None:
                self.metric.update(self.sampler(noise))
            else:  # every class as often as the others, in the same order at every validation
                labels = (torch.arange(n, device=self.device) + batch_idx * n) % self.num_classes
                self.metric.update(self.sampler(noise, labels), labels)

    def on_validation_epoch_end(self) -> None:
        if self.metric is None:
            return
        values = None
        if self.trainer.is_global_zero and self.metric.samples > self.metric.k:
            values = self.metric.compute()
        values = self.trainer.strategy.broadcast(values, src=0)  # every process logs them: the checkpoint callback
        if values is not None:                                    # reads the Frechet distance
            # the same values everywhere: the mean changes nothing
            self.log_dict({f"val/{name}": value for name, value in values.items()}, sync_dist=True)
            self.log("step", float(self.generator_steps), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gan_steps"] = {"generator": self.generator_steps, "discriminator": self.discriminator_steps}
        if self.generator_config is not None:  # what scripts/gan_samples.py rebuilds the generator from
            checkpoint[GENERATOR_KEY] = {"config": self.generator_config, "noise": self.noise}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        steps = checkpoint.get("gan_steps", {})
        self.generator_steps, self.discriminator_steps = steps.get("generator", 0), steps.get("discriminator", 0)
