"""What every GAN data module shares: shuffling with the seed, loaders, and the metric's reference sets.

A subclass provides `load()`, a data set of (image, label) pairs with images (channels, size, size)
in [-1, 1], and `num_classes` (None for unlabelled data, whose labels are all 0), which conditional
GANs need. Training uses every image, or with `train_size` the last that many of the shuffled order
(disjoint from the reference sets when the data holds enough: low-data experiments). Validation yields
`reference_size` real images (half A), and `reference_halves()` gives half A and a disjoint half B of
the same size, whose distance is the metric's floor. Under DDP, Lightning gives each process its own
shard of the training images; the validation set stays whole in every process, so that rank zero
scores the metric on all of it.
"""

from abc import ABC, abstractmethod

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from nst_research.data.loaders import worker_count
from nst_research.errors import UserInputError


class ImageDataModule(pl.LightningDataModule, ABC):
    name: str = "data"
    num_classes: int | None = None  # classes of the labels, known after `setup`; None: unlabelled

    def __init__(self, image_size: int, channels: int, batch_size: int = 64, num_workers: int | None = 0,
                 seed: int = 0, reference_size: int = 1000, train_size: int | None = None) -> None:
        super().__init__()
        num_workers = worker_count(num_workers)
        for key, value, minimum in (("image_size", image_size, 8), ("channels", channels, 1),
                                    ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                    ("reference_size", reference_size, 2),
                                    *((("train_size", train_size, 1),) if train_size is not None else ())):
            if not isinstance(value, int) or value < minimum:
                raise UserInputError(f"data.{key}={value} must be an integer >= {minimum}")
        self.image_size, self.channels = image_size, channels
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.reference_size, self.train_size = reference_size, train_size
        self.dataset: Dataset | None = None
        self.order: torch.Tensor | None = None

    @abstractmethod
    def load(self) -> Dataset:
        """The whole data set: (image in [-1, 1] of shape (channels, image_size, image_size), label) pairs."""

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.dataset = self.load()
        self.check_sizes(len(self.dataset))
        self.order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed))

    def check_sizes(self, images: int) -> None:
        """The data holds the metric's two reference sets and a training batch; the error names what to change."""
        if images < 2 * self.reference_size:
            raise UserInputError(f"data={self.name} has {images} images; the metric compares 2 x "
                                 f"data.reference_size={2 * self.reference_size} real ones: lower metric.samples "
                                 f"(data.reference_size follows it) to at most {images // 2}, or add images")
        if self.train_size is not None and self.train_size > images:
            raise UserInputError(f"data.train_size={self.train_size}: data={self.name} has only {images} images")
        train = images if self.train_size is None else self.train_size
        if train < self.batch_size:
            raise UserInputError(f"data={self.name} trains on {train} images, fewer than data.batch_size="
                                 f"{self.batch_size}: lower data.batch_size (e.g. data.batch_size={train}) or add "
                                 "images")

    def loader(self, dataset: Dataset, shuffle: bool, sampler: DistributedSampler | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler, drop_last=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        train = self.dataset if self.train_size is None else Subset(self.dataset,
                                                                     self.order[-self.train_size:].tolist())
        return self.loader(train, shuffle=True)

    def reference(self, half: int) -> Subset:
        self.setup()
        n = self.reference_size
        return Subset(self.dataset, self.order[half * n:(half + 1) * n].tolist())

    def val_dataloader(self) -> DataLoader:
        """Half A of the reference set: the real images the metric compares samples with. In order and whole
        in every process: Lightning shards a loader under DDP unless its sampler is already distributed, so
        this one is a one-replica DistributedSampler (on one device it is the plain sequential order)."""
        reference = self.reference(0)
        return self.loader(reference, shuffle=False, sampler=DistributedSampler(reference, num_replicas=1, rank=0,
                                                                                shuffle=False))

    def reference_halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Two disjoint sets of `reference_size` real images (half A is the validation set)."""
        return tuple(torch.stack([image for image, _ in self.reference(half)]) for half in (0, 1))
