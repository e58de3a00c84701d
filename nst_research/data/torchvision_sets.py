"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision: downloaded once into `root` on a connected
machine; offline, one clear error that points at the data set shipped with the package."""

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets, transforms

from nst_research.data.base import ImageDataModule
from nst_research.errors import UserInputError


class TorchvisionDataModule(ImageDataModule):
    dataset_class: type[datasets.VisionDataset]
    native_channels: int
    num_classes = 10

    def __init__(self, root: str, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if self.channels != self.native_channels:
            raise UserInputError(f"data={self.name} has {self.native_channels}-channel images, but the GAN makes "
                                 f"{self.channels}-channel images; "
                                 "choose a matching gan= (gan=dcgan64 follows the data)")

    def get(self, download: bool) -> Dataset:
        transform = transforms.Compose([
            transforms.Resize(self.image_size), transforms.CenterCrop(self.image_size),
            transforms.ToTensor(), transforms.Normalize([0.5] * self.channels, [0.5] * self.channels),
        ])
        return self.dataset_class(str(self.root), train=True, download=download, transform=transform)

    def prepare_data(self) -> None:
        try:
            self.get(download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision raises RuntimeError too
            reason = (str(error).splitlines() or [""])[0]
            raise UserInputError(f"cannot download data={self.name} into {self.root} ({type(error).__name__}: "
                                 f"{reason}); offline, use data=mnist5k (5,000 MNIST digits, no download)") from None

    def load(self) -> Dataset:
        self.prepare_data()
        return self.get(download=False)


class MNISTDataModule(TorchvisionDataModule):
    name, dataset_class, native_channels = "mnist", datasets.MNIST, 1


class FashionMNISTDataModule(TorchvisionDataModule):
    name, dataset_class, native_channels = "fashion_mnist", datasets.FashionMNIST, 1


class CIFAR10DataModule(TorchvisionDataModule):
    name, dataset_class, native_channels = "cifar10", datasets.CIFAR10, 3

