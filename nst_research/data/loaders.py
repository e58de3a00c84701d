"""What every DataLoader of image files shares: how many worker processes, and skipping files found unreadable
while training."""

import multiprocessing
import os
from pathlib import Path

from torch.utils.data import Dataset

from nst_research.data.files import UnreadableImage, warn_skipped
from nst_research.errors import UserInputError

MAX_AUTO_WORKERS = 8  # a cap for null, so that a many-core node does not start dozens of processes per loader


def worker_count(configured: int | None) -> int:
    """`num_workers` as configured, or for null one per CPU this process may use (at most `MAX_AUTO_WORKERS`):
    never more than the machine has, which DataLoader warns about."""
    if configured is not None:
        return configured
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, MAX_AUTO_WORKERS)


class SkipUnreadable(Dataset):
    """`dataset`, whose item i is read from file `files[i % len(files)]`, with an item whose file does not decode
    replaced by the next item that does. Which files were skipped is kept in shared memory, so that the main
    process can count what its DataLoader worker processes skipped (`warn`: one line)."""

    def __init__(self, dataset: Dataset, files: list[Path], node: str) -> None:
        self.dataset, self.files, self.node = dataset, files, node
        self.index = {path: i for i, path in enumerate(files)}
        self.skipped = multiprocessing.RawArray("b", len(files))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        for offset in range(len(self)):
            try:
                return self.dataset[(index + offset) % len(self)]
            except UnreadableImage as error:
                self.skipped[self.index[error.path]] = 1
        raise UserInputError(f"none of the image files under {self.node}.root reads; point {self.node}.root at a "
                             "folder of images")

    def warn(self) -> None:
        warn_skipped([path for path, skipped in zip(self.files, self.skipped) if skipped], self.node)
