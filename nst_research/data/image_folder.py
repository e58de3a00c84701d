"""Any folder of images (searched recursively), resized and centre-cropped to the GAN's size."""

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets.folder import default_loader

from nst_research.data.base import ImageDataModule
from nst_research.data.files import image_files
from nst_research.errors import UserInputError


class ImageFiles(Dataset):
    """(image, 0) for every image file under a folder; `transform` maps a PIL image to a tensor."""

    def __init__(self, files: list[Path], transform: transforms.Compose) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return self.transform(default_loader(str(self.files[index]))), 0


class ImageFolderDataModule(ImageDataModule):
    name = "image_folder"

    def __init__(self, root: str, **kwargs: int) -> None:
        super().__init__(**kwargs)
        if self.channels not in (1, 3):
            raise UserInputError(f"data=image_folder makes 1- or 3-channel images, not {self.channels}")
        self.root = Path(root).expanduser()

    def load(self) -> ImageFiles:
        files = image_files(self.root)
        grayscale = [transforms.Grayscale(1)] if self.channels == 1 else []
        transform = transforms.Compose([
            *grayscale, transforms.Resize(self.image_size), transforms.CenterCrop(self.image_size),
            transforms.ToTensor(), transforms.Normalize([0.5] * self.channels, [0.5] * self.channels),
        ])
        return ImageFiles(files, transform)
