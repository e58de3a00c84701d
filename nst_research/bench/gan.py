"""The `gan` benchmark section: training steps per second (one discriminator and one generator update
per step, through Lightning, as in a run) and peak memory for each architecture, on random images
(data loading and the metric are left out)."""

import warnings

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from nst_research.app import CONFIG_DIR
from nst_research.bench.measure import (
    Measurement,
    StepTimer,
    in_fresh_process,
    peak_memory_mib,
    resident_mib,
)
from nst_research.gan.losses import get_loss
from nst_research.gan.module import GANModule

ARCHITECTURES = ["fc", "dcgan"]


def measure_case(gan: str, loss: str, device: str, batch_size: int, warmup: int, steps: int) -> Measurement:
    baseline = resident_mib()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["task=gan", f"gan={gan}", f"gan.loss={loss}", "output_dir=."])
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
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=DataLoader(images, batch_size=batch_size, drop_last=True))
    return Measurement("gan", f"{gan} ({loss})", device, batch_size, steps, steps / timer.elapsed,
                       peak_memory_mib(device, baseline))


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    warmup, steps = (3, 10) if quick else (10, 100)
    return [in_fresh_process(measure_case, gan, "bce", device, 64, warmup, steps)
            for device in devices for gan in ARCHITECTURES]
