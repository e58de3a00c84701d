"""Training photographs for a stylising network: random resized crops, and held-out images for validation.

Johnson et al. (2016) trained on 256x256 images of COCO train2014 (about 80,000 photographs, two epochs):
`FolderPhotos` reads any such folder. `DemoPhotos` is an offline demonstration set that needs no download:
the twelve colour photographs shipped inside installed wheels (scikit-image, scikit-learn, matplotlib). Twelve
photos cannot teach a network to stylise every kind of picture the way COCO does; they are enough to see a
network learn a style on a laptop, and for tests.

Training items are random resized crops (`scale`: the fraction of the photo's area a crop covers), flipped
at random, `image_size` px square. With `steps_per_epoch`, an epoch is `steps_per_epoch * batch_size`
crops (over all processes), each photo in turn, so a small set still gives long epochs; without it, one
crop per file. Validation uses the `held_out` images (demo photo names or image files), resized so the
short side is `val_size` and centre-cropped square: the same pictures at every validation, for the loss and
for the sample grids. `validation_images()` returns them as one batch.
"""

import importlib.util
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from nst_research.data.files import image_files, read_image, readable_files
from nst_research.data.loaders import SkipUnreadable, worker_count
from nst_research.errors import UserInputError
from nst_research.nst.images import load_image, to_rgb

# name -> (package, file inside the package); public domain or CC0 (scikit-image), or as credited by each project.
DEMO_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def demo_photo_path(name: str) -> Path | None:
    """The file of a demo photo inside its installed wheel (the package is not imported), or None if absent."""
    package, relative = DEMO_PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / relative
    return path if path.is_file() else None


def demo_photos() -> dict[str, Path]:
    """Every demo photo found; one that this machine's wheels lack is skipped with a warning."""
    found = {}
    for name, (package, relative) in DEMO_PHOTOS.items():
        path = demo_photo_path(name)
        if path is None:
            warnings.warn(f"demo photo {name} ({package}/{relative}) is not in the installed {package}; "
                          "training without it", stacklevel=2)
        else:
            found[name] = path
    return found


def read_rgb(path: Path) -> Tensor:
    """An image file as a uint8 RGB tensor (3, H, W)."""
    return TF.pil_to_tensor(to_rgb(read_image(path, PhotoDataModule.key)))


class RandomCrops(Dataset):
    """`length` random resized crops, flipped at random, as float RGB in [0, 1]; item i is cut from file i mod n.

    With `cache`, the files are decoded once and kept in memory (a small set); otherwise each item reads its file.
    """

    def __init__(self, files: Sequence[Path], size: int, scale: tuple[float, float], length: int,
                 cache: bool = False) -> None:
        self.files, self.length = list(files), length
        self.images = [read_rgb(path) for path in self.files] if cache else None
        self.transform = v2.Compose([
            v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        k = index % len(self.files)
        return self.transform(self.images[k] if self.images is not None else read_rgb(self.files[k]))


class PhotoDataModule(pl.LightningDataModule, ABC):
    """Random crops of `training_files()` for training; the `held_out` images, whole, for validation."""

    key = "photos"  # the config group, named in error messages
    cache = False
    skip_unreadable = False

    def __init__(self, image_size: int = 128, batch_size: int = 4, held_out: Sequence[str] = ("chelsea", "astronaut"),
                 val_size: int | None = None, scale: Sequence[float] = (0.25, 1.0), steps_per_epoch: int | None = None,
                 num_workers: int | None = 0, seed: int = 0) -> None:
        super().__init__()
        val_size, num_workers = image_size if val_size is None else val_size, worker_count(num_workers)
        for name, value, minimum in (("image_size", image_size, 8), ("batch_size", batch_size, 1),
                                     ("val_size", val_size, 8), ("num_workers", num_workers, 0)):
            if not isinstance(value, int) or value < minimum:
                raise UserInputError(f"{self.key}.{name}={value} must be an integer >= {minimum}")
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise UserInputError(f"{self.key}.steps_per_epoch={steps_per_epoch} must be an integer >= 1, or null "
                                 "(one crop per image)")
        scale = tuple(scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise UserInputError(f"{self.key}.scale={list(scale)} must be [low, high] with 0 < low <= high <= 1: "
                                 "the fraction of a photo's area a crop covers")
        if not held_out:
            raise UserInputError(f"{self.key}.held_out is empty; name at least one image for validation")
        self.image_size, self.batch_size, self.val_size = image_size, batch_size, val_size
        self.held_out, self.scale, self.steps_per_epoch = list(held_out), scale, steps_per_epoch
        self.num_workers, self.seed = num_workers, seed
        self.train_set: RandomCrops | None = None
        self.val_images: Tensor | None = None

    @abstractmethod
    def training_files(self) -> list[Path]:
        """The image files crops are cut from."""

    def held_out_path(self, spec: str) -> Path:
        """A held-out image: a demo photo name or an image file."""
        if spec in DEMO_PHOTOS:
            path = demo_photo_path(spec)
            if path is None:
                raise UserInputError(f"{self.key}.held_out: demo photo {spec} is not in the installed "
                                     f"{DEMO_PHOTOS[spec][0]}; hold out another photo")
            return path
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserInputError(f"{self.key}.held_out: {spec!r} is neither a demo photo ({', '.join(DEMO_PHOTOS)}) "
                                 "nor an image file")
        return path

    def validation_images(self) -> Tensor:
        """The held-out images, short side `val_size`, centre-cropped square: (N, 3, val_size, val_size) in [0, 1]."""
        if self.val_images is None:
            images = []
            for spec in self.held_out:
                image = load_image(str(self.held_out_path(spec)))
                image = TF.resize(image, self.val_size, antialias=True)
                images.append(TF.center_crop(image, [self.val_size, self.val_size]).clamp(0, 1))
            self.val_images = torch.cat(images)
        return self.val_images

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files = self.training_files()
        length = self.steps_per_epoch * self.batch_size if self.steps_per_epoch else len(files)
        if length < self.batch_size:
            raise UserInputError(f"{len(files)} training image(s), fewer than {self.key}.batch_size={self.batch_size}; "
                                 f"set {self.key}.steps_per_epoch to draw several crops per image, or lower "
                                 f"{self.key}.batch_size")
        crops = RandomCrops(files, self.image_size, self.scale, length, cache=self.cache)
        self.train_set = SkipUnreadable(crops, files, self.key) if self.skip_unreadable else crops
        self.validation_images()

    def teardown(self, stage: str) -> None:
        if stage == "fit" and isinstance(self.train_set, SkipUnreadable):
            self.train_set.warn()

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        """The held-out images in order, whole in every process: under DDP Lightning would shard a plain loader,
        so the sampler is a one-replica DistributedSampler (on one device, the plain sequential order)."""
        images = list(self.validation_images())
        return DataLoader(images, batch_size=self.batch_size,
                          sampler=DistributedSampler(images, num_replicas=1, rank=0, shuffle=False))


class DemoPhotos(PhotoDataModule):
    """The colour photographs shipped in installed wheels (`DEMO_PHOTOS`), less the held-out ones: offline."""

    cache = True  # twelve photos, about 20 MB decoded

    def training_files(self) -> list[Path]:
        photos = demo_photos()
        files = [path for name, path in photos.items() if name not in self.held_out]
        if not files:
            raise UserInputError(f"{self.key}.held_out holds out every demo photo; leave some for training")
        return files


class FolderPhotos(PhotoDataModule):
    """Every image under `root` (searched recursively), e.g. COCO train2014; with `skip_unreadable`, files that do
    not decode are left out (`nst_research.data.files`)."""

    def __init__(self, root: str, skip_unreadable: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.skip_unreadable = Path(root).expanduser(), skip_unreadable

    def training_files(self) -> list[Path]:
        return readable_files(image_files(self.root, key=f"{self.key}.root"), self.key, self.skip_unreadable)
