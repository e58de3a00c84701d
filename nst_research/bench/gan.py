"""The `gan` benchmark section: GAN training step time and peak memory, through the framework and as a
plain PyTorch loop, for `fc` and `dcgan` in fp32 (`32-true`) and bf16 autocast (`bf16-mixed`) (batch 64,
`bce`, Adam, one discriminator and one generator update per step, random images: data loading and the
metric are left out).

The *framework* row builds the module, loss, optimizers and trainer from the task's config as a run
does and trains through Lightning, logging to CSV every `trainer.log_every_n_steps`. The *plain* row
is the same networks, loss and optimizers in a bare loop over the same batches, under the same autocast.
The two alternate, one fresh process per round each, and pool their rounds' steps; `overhead` gives
their ratio.
"""

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from nst_research.bench.measure import (
    PRECISIONS,
    Measurement,
    StepTimer,
    autocast,
    compose_config,
    in_fresh_process,
    peak_memory_mib,
    reset_peak_memory,
    resident_mib,
    step_measurement,
    synchronize,
)
from nst_research.gan.module import frozen, sample_noise
from nst_research.gan.task import make_loss
from nst_research.parts import build, make_trainer
from nst_research.tracking.loggers import instantiate_loggers

ARCHITECTURES = ["fc", "dcgan"]
LOSS = "bce"
BATCH_SIZE = 64
# (rounds, warm-up steps, timed steps); quick: one round of few steps, to check that it works. Long rounds:
# the steady state of a long training, with Lightning's first logged steps (one-off set-up) amortised.
SCHEDULE, QUICK = (3, 10, 300), (1, 3, 10)


def gan_config(gan: str, output_dir: Path) -> DictConfig:
    return compose_config(["task=gan", f"gan={gan}", f"gan.loss={LOSS}", "logger=csv", f"output_dir={output_dir}"])


def random_batches(channels: int, size: int, batches: int) -> DataLoader:
    """`batches` batches of random images in [-1, 1]."""
    images = TensorDataset(torch.rand(BATCH_SIZE * batches, channels, size, size) * 2 - 1)
    return DataLoader(images, batch_size=BATCH_SIZE, drop_last=True)


def framework_case(gan: str, device: str, precision: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """Timed steps' durations and the peak memory of the task's module trained by the task's trainer."""
    baseline = resident_mib()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = gan_config(gan, Path(tmp))
        torch.manual_seed(0)
        module = build(cfg.module)(build(cfg.gan.generator), build(cfg.gan.discriminator), make_loss(cfg.gan),
                                   build(cfg.gan.optimizer.generator), build(cfg.gan.optimizer.discriminator))
        timer = StepTimer(warmup, steps)
        trainer = make_trainer(cfg.trainer, accelerator=device, devices=1, max_epochs=1, precision=precision,
                               logger=instantiate_loggers(cfg.logger), enable_checkpointing=False,
                               enable_progress_bar=False, callbacks=[timer])
        reset_peak_memory(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers and the like
            trainer.fit(module, train_dataloaders=random_batches(cfg.gan.channels, cfg.gan.image_size, warmup + steps))
    return timer.durations, peak_memory_mib(device, baseline)


def plain_case(gan: str, device: str, precision: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """The same computation without the framework: the networks, loss and Adam in a bare loop (the forward
    passes under the precision's autocast, D's scores in fp32 for the losses, as the module does)."""
    baseline = resident_mib()
    cfg = gan_config(gan, Path("."))
    torch.manual_seed(0)
    generator, discriminator = build(cfg.gan.generator).to(device), build(cfg.gan.discriminator).to(device)
    loss = make_loss(cfg.gan)
    g_opt = build(cfg.gan.optimizer.generator)(generator.parameters())
    d_opt = build(cfg.gan.optimizer.discriminator)(discriminator.parameters())
    reset_peak_memory(device)
    ends = []
    for (real,) in random_batches(cfg.gan.channels, cfg.gan.image_size, warmup + steps):
        real = real.to(device)
        with autocast(device, precision):
            fake = generator(sample_noise((len(real), generator.noise_dim), cfg.gan.noise, device=device))
            d_loss = loss.discriminator(discriminator(real).float(), discriminator(fake.detach()).float())
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        with frozen(discriminator):
            with autocast(device, precision):
                g_loss = loss.generator(discriminator(fake).float())
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
        synchronize(torch.device(device))
        ends.append(time.perf_counter())
    timed = ends[warmup - 1:]
    return [b - a for a, b in zip(timed, timed[1:])], peak_memory_mib(device, baseline)


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    """Framework and plain loop for each device, architecture and precision: step times pooled over the
    rounds, peak memory the largest of them."""
    rounds, warmup, steps = QUICK if quick else SCHEDULE
    rows = []
    for device in devices:
        for gan in ARCHITECTURES:
            for precision in PRECISIONS:
                timings = {"framework": [], "plain": []}
                for _ in range(rounds):
                    for loop, case in (("framework", framework_case), ("plain", plain_case)):
                        timings[loop].append(in_fresh_process(case, gan, device, precision, warmup, steps))
                rows += [step_measurement("gan", f"{gan} ({LOSS}, {precision}) {loop}", device, BATCH_SIZE,
                                          [step for round_steps, _ in runs for step in round_steps],
                                          max(peak for _, peak in runs)) for loop, runs in timings.items()]
    return rows


def overhead(rows: list[Measurement]) -> list[dict[str, Any]]:
    """Framework mean step time over the plain loop's, per architecture and device. The mean, not the
    median: the framework's logged steps (one in `trainer.log_every_n_steps`) cost more than the others."""
    by_case = {(row.device, row.case): row for row in rows if row.section == "gan"}
    ratios = []
    for (device, case), row in by_case.items():
        if case.endswith(" framework"):
            plain = by_case[(device, case.replace(" framework", " plain"))]
            framework_ms, plain_ms = 1000 / row.steps_per_s, 1000 / plain.steps_per_s
            ratios.append({"case": case.removesuffix(" framework"), "device": device, "framework_ms": framework_ms,
                           "plain_ms": plain_ms, "ratio": framework_ms / plain_ms})
    return ratios
