"""The `gan` benchmark section: training steps per second (one discriminator and one generator update
per step, through Lightning, as in a run) and peak memory for each architecture, on random images
(data loading and the metric are left out)."""

import warnings

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from nst_research.bench.measure import (
    Measurement,
    StepTimer,
    compose_config,
    in_fresh_process,
    peak_memory_mib,
    reset_peak_memory,
    resident_mib,
    step_measurement,
)
from nst_research.gan.losses import get_loss
from nst_research.gan.module import GANModule

ARCHITECTURES = ["fc", "dcgan"]


def measure_case(gan: str, loss: str, device: str, batch_size: int, warmup: int, steps: int) -> Measurement:
    baseline = resident_mib()
    cfg = compose_config(["task=gan", f"gan={gan}", f"gan.loss={loss}", "output_dir=."])
    torch.manual_seed(0)
    generator, discriminator = instantiate(cfg.gan.generator), instantiate(cfg.gan.discriminator)
    module = GANModule(generator, discriminator, get_loss(loss), instantiate(cfg.gan.optimizer.generator),
                       instantiate(cfg.gan.optimizer.discriminator), noise=cfg.gan.noise,
                       sample_every=10**9, grid_size=1)
    shape = (generator.channels, generator.image_size, generator.image_size)
    images = TensorDataset(torch.rand(batch_size * (warmup + steps), *shape) * 2 - 1)
    timer = StepTimer(warmup, steps)
    trainer = pl.Trainer(accelerator=device, devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    reset_peak_memory(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=DataLoader(images, batch_size=batch_size, drop_last=True))
    return step_measurement("gan", f"{gan} ({loss})", device, batch_size, timer.durations,
                            peak_memory_mib(device, baseline))


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    warmup, steps = (3, 10) if quick else (5, 50)
    return [in_fresh_process(measure_case, gan, "bce", device, 64, warmup, steps)
            for device in devices for gan in ARCHITECTURES]
