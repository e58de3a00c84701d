"""Measuring one benchmark case: step times and peak memory, each case in its own forked process
(so the peak resident memory on a CPU is the case's own), and the tables of results."""

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nst_research.app import CONFIG_DIR


@dataclass
class Measurement:
    section: str
    case: str
    device: str
    batch_size: int
    steps: int
    steps_per_s: float
    peak_memory_mib: float  # CUDA: peak allocated by torch; CPU: peak resident growth of the process
    median_step_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepTimer(pl.Callback):
    """Times training batches after `warmup` of them; stops the trainer after `warmup + steps`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        synchronize(trainer.strategy.root_device)
        self.ends.append(time.perf_counter())
        if len(self.ends) == self.warmup + self.steps:
            trainer.should_stop = True

    @property
    def durations(self) -> list[float]:
        """The timed steps' durations (each from the end of the step before it)."""
        timed = self.ends[self.warmup - 1:]
        return [b - a for a, b in zip(timed, timed[1:])]


def step_measurement(section: str, case: str, device: str, batch_size: int, durations: list[float],
                     peak_mib: float) -> Measurement:
    return Measurement(section, case, device, batch_size, len(durations), len(durations) / sum(durations), peak_mib,
                       1000 * statistics.median(durations))


# The trainer precisions the training sections compare: fp32, and bf16 autocast with fp32 weights (Lightning's names)
PRECISIONS = ["32-true", "bf16-mixed"]


def autocast(device: str, precision: str) -> torch.autocast:
    """What Lightning's `precision` does around a step, for the plain loops: bf16 autocast for `bf16-mixed`."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def compose_config(overrides: list[str]) -> DictConfig:
    """The config a run with these command-line overrides would get."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib(device: str, baseline_mib: float) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mib


def _child(fn: Callable[..., Measurement], args: tuple, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(fn(*args))
    except Exception as error:
        queue.put(error)  # the parent raises it
        raise


def in_fresh_process(fn: Callable[..., Measurement], *args: Any) -> Measurement:
    """Run `fn(*args)` in a forked process (CUDA cases too: the parent never initialises CUDA)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(fn, args, queue))
    process.start()
    result = queue.get()
    process.join()
    if isinstance(result, BaseException):
        raise result
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of one kind as an aligned text table: numbers right-aligned, floats to 4 significant digits."""
    columns = list(rows[0])
    cells = [[cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [all(isinstance(row[c], (int, float)) or row[c] is None for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric))

    return "\n".join([line(columns), "  ".join("-" * w for w in widths), *(line(values) for values in cells)])


def cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
