"""The `feedforward` benchmark section: training steps per second of a stylising network, and the time to
stylise one image with it, with peak memory.

*train* rows: the task's module, photos and trainer (`task=feedforward` at its defaults: Johnson et al.'s
network, the default model, layers and loss terms, batch 4 of the demo photos) at 128 and 256 px, trained
through Lightning with CSV logging; validation and sample grids are left out of the timed steps.
*stylize* rows: the network alone (untrained weights: the time does not depend on them) in eval mode under
`torch.inference_mode`, one image at a time at 256, 512 and 1024 px, as `scripts/stylize.py` runs it.
Each case runs in a fresh process, so its peak memory is its own.
"""

import tempfile
import time
import warnings

import torch

from nst_research.bench.measure import (
    Measurement,
    StepTimer,
    compose_config,
    in_fresh_process,
    peak_memory_mib,
    reset_peak_memory,
    resident_mib,
    step_measurement,
    synchronize,
)
from nst_research.feedforward.checkpoint import build_network
from nst_research.feedforward.task import build_parts
from nst_research.parts import make_trainer
from nst_research.tracking.loggers import instantiate_loggers

BATCH_SIZE = 4
TRAIN_SIZES, STYLIZE_SIZES = [128, 256], [256, 512, 1024]
QUICK_TRAIN_SIZES, QUICK_STYLIZE_SIZES = [32], [64, 128]
# (warm-up steps, timed steps); quick: few steps, to check that it works.
TRAIN_SCHEDULE, STYLIZE_SCHEDULE, QUICK = (3, 20), (2, 10), (2, 3)


def train_case(size: int, device: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """Timed training steps' durations and the peak memory of the task's module trained by its trainer."""
    baseline = resident_mib()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["task=feedforward", f"image_size={size}", f"photos.batch_size={BATCH_SIZE}",
                              "logger=csv", f"output_dir={tmp}"])
        torch.manual_seed(0)
        photos, module, _ = build_parts(cfg)  # no output_dir: no sample grids
        timer = StepTimer(warmup, steps)
        trainer = make_trainer(cfg.trainer, accelerator=device, devices=1, max_steps=warmup + steps,
                               limit_val_batches=0, logger=instantiate_loggers(cfg.logger), enable_checkpointing=False,
                               enable_progress_bar=False, callbacks=[timer])
        reset_peak_memory(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers and the like
            trainer.fit(module, datamodule=photos)
    return timer.durations, peak_memory_mib(device, baseline)


def stylize_case(size: int, device: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """Durations of single-image forward passes of the network, and the peak memory."""
    baseline = resident_mib()
    network = build_network(compose_config(["task=feedforward"]).network).eval().to(device)
    image = torch.rand(1, 3, size, size, device=device)
    reset_peak_memory(device)
    ends = [time.perf_counter()]
    with torch.inference_mode():
        for _ in range(warmup + steps):
            network(image)
            synchronize(torch.device(device))
            ends.append(time.perf_counter())
    timed = ends[warmup:]
    return [b - a for a, b in zip(timed, timed[1:])], peak_memory_mib(device, baseline)


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    """Training at each training size (batch 4), then stylising at each image size (one image), per device."""
    train_sizes, stylize_sizes = (QUICK_TRAIN_SIZES, QUICK_STYLIZE_SIZES) if quick else (TRAIN_SIZES, STYLIZE_SIZES)
    rows = []
    for device in devices:
        for kind, case, sizes, batch, schedule in (("train", train_case, train_sizes, BATCH_SIZE, TRAIN_SCHEDULE),
                                                   ("stylize", stylize_case, stylize_sizes, 1, STYLIZE_SCHEDULE)):
            warmup, steps = QUICK if quick else schedule
            for size in sizes:
                durations, peak = in_fresh_process(case, size, device, warmup, steps)
                rows.append(step_measurement("feedforward", f"{kind} {size}px", device, batch, durations, peak))
    return rows
