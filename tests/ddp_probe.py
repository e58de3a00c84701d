"""A test-only Lightning callback, added to a GAN run with `+callbacks.probe._target_=ddp_probe.RecordBatches`
(tests/ on PYTHONPATH): each process writes which training images it was given, to check DDP's sharding."""

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import Tensor


def fingerprint(image: Tensor) -> str:
    return hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest()


class RecordBatches(pl.Callback):
    """Writes `<out_dir>/rank<r>.json`: the process's rank, world size, sampler class and image fingerprints."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.images = Path(out_dir), []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.images += [fingerprint(image) for image in batch[0]]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "sampler": type(trainer.train_dataloader.sampler).__name__, "images": self.images}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
