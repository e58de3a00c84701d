"""Measuring one benchmark case: steps per second and peak memory, each case in its own forked process
(so the peak resident memory on a CPU is the case's own), and the table of results."""

import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch


@dataclass
class Measurement:
    section: str
    case: str
    device: str
    batch_size: int
    steps: int
    steps_per_s: float
    peak_memory_mib: float  # CUDA: peak allocated by torch; CPU: peak resident growth of the process

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepTimer(pl.Callback):
    """Times training batches after `warmup` of them; stops the trainer after `warmup + steps`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start: float | None = None
        self.elapsed = 0.0
        self.done = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.done += 1
        if self.done == self.warmup:
            synchronize(trainer.strategy.root_device)
            self.start = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            synchronize(trainer.strategy.root_device)
            self.elapsed = time.perf_counter() - self.start
            trainer.should_stop = True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


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


def format_table(rows: list[Measurement]) -> str:
    header = f"{'section':<8} {'case':<24} {'device':<6} {'batch':>5} {'steps':>5} {'steps/s':>9} {'peak MiB':>9}"
    lines = [header, "-" * len(header)]
    lines += [f"{m.section:<8} {m.case:<24} {m.device:<6} {m.batch_size:>5} {m.steps:>5} {m.steps_per_s:>9.2f} "
              f"{m.peak_memory_mib:>9.1f}" for m in rows]
    return "\n".join(lines)
