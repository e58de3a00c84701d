"""The `feedforward` benchmark section: training steps per second of a stylising network, and the time to
stylise one image with it, with peak memory.

*train* rows: the task's module, photos and trainer (`task=feedforward` at its defaults: Johnson et al.'s
network, the default model, layers and loss terms, batch 4 of the demo photos) at 128 and 256 px, in fp32
(`32-true`) and bf16 autocast (`bf16-mixed`), trained through Lightning with CSV logging; validation and
sample grids are left out of the timed steps.
*stylize* rows: the network alone (untrained weights: the time does not depend on them) in eval mode under
`torch.inference_mode`, one image at a time at 256, 512 and 1024 px, as `scripts/stylize.py` runs it.
Each case runs in a fresh process, so its peak memory is its own.
"""

import tempfile
import time
import warnings
from functools import partial

import torch

from nst_research.bench.measure import (
    PRECISIONS,
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


def train_case(size: int, device: str, precision: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """Timed training steps' durations and the peak memory of the task's module trained by its trainer."""
    baseline = resident_mib()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["task=feedforward", f"image_size={size}", f"photos.batch_size={BATCH_SIZE}",
                              "logger=csv", f"output_dir={tmp}"])
        torch.manual_seed(0)
        photos, module, _ = build_parts(cfg)  # no output_dir: no sample grids
        timer = StepTimer(warmup, steps)
        trainer = make_trainer(cfg.trainer, accelerator=device, devices=1, precision=precision,
                               max_steps=warmup + steps, limit_val_batches=0, logger=instantiate_loggers(cfg.logger),
                               enable_checkpointing=False, enable_progress_bar=False, callbacks=[timer])
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
    """Training at each training size (batch 4) in each precision, then stylising at each image size (one
    image, fp32), per device."""
    train_sizes, stylize_sizes = (QUICK_TRAIN_SIZES, QUICK_STYLIZE_SIZES) if quick else (TRAIN_SIZES, STYLIZE_SIZES)
    train_schedule, stylize_schedule = (QUICK, QUICK) if quick else (TRAIN_SCHEDULE, STYLIZE_SCHEDULE)
    rows = []
    for device in devices:
        cases = [(f"train {size}px {precision}", BATCH_SIZE, partial(train_case, size, device, precision),
                  train_schedule) for size in train_sizes for precision in PRECISIONS]
        cases += [(f"stylize {size}px", 1, partial(stylize_case, size, device), stylize_schedule)
                  for size in stylize_sizes]
        for name, batch, case, (warmup, steps) in cases:
            durations, peak = in_fresh_process(case, warmup, steps)
            rows.append(step_measurement("feedforward", name, device, batch, durations, peak))
    return rows
