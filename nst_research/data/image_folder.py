"""Any folder of images (searched recursively), resized and centre-cropped to the GAN's size. When every
image lies in a subfolder of the root and there are at least two, each subfolder is a class (as
torchvision's ImageFolder): labelled data for conditional GANs. With `skip_unreadable`, files that do not
decode are left out (`nst_research.data.files`)."""

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import transforms

from nst_research.data.base import ImageDataModule
from nst_research.data.files import image_files, read_image, readable_files
from nst_research.data.loaders import SkipUnreadable
from nst_research.errors import UserInputError


class ImageFiles(Dataset):
    """(image, label) for every image file (label 0 for all without `labels`); `transform` maps a PIL image
    to a tensor."""

    def __init__(self, files: list[Path], transform: transforms.Compose, labels: list[int] | None = None) -> None:
        self.files, self.transform = files, transform
        self.labels = labels or [0] * len(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return self.transform(read_image(self.files[index], "data").convert("RGB")), self.labels[index]


class ImageFolderDataModule(ImageDataModule):
    name = "image_folder"

    def __init__(self, root: str, skip_unreadable: bool = False, **kwargs: int) -> None:
        super().__init__(**kwargs)
        if self.channels not in (1, 3):
            raise UserInputError(f"data=image_folder makes 1- or 3-channel images, not {self.channels}")
        self.root, self.skip_unreadable = Path(root).expanduser(), skip_unreadable

    def load(self) -> Dataset:
        files = readable_files(image_files(self.root), "data", self.skip_unreadable)
        grayscale = [transforms.Grayscale(1)] if self.channels == 1 else []
        transform = transforms.Compose([
            *grayscale, transforms.Resize(self.image_size), transforms.CenterCrop(self.image_size),
            transforms.ToTensor(), transforms.Normalize([0.5] * self.channels, [0.5] * self.channels),
        ])
        classes = sorted({file.relative_to(self.root).parts[0] for file in files})
        labelled = len(classes) > 1 and all(len(file.relative_to(self.root).parts) > 1 for file in files)
        if labelled:
            self.num_classes = len(classes)
        labels = [classes.index(file.relative_to(self.root).parts[0]) for file in files] if labelled else None
        dataset = ImageFiles(files, transform, labels)
        return SkipUnreadable(dataset, files, "data") if self.skip_unreadable else dataset

    def teardown(self, stage: str) -> None:
        if stage == "fit" and isinstance(self.dataset, SkipUnreadable):
            self.dataset.warn()
