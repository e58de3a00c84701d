"""Training photographs for feed-forward style transfer: the offline demo set, folders, held-out images."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.feedforward import data
from nst_research.feedforward.data import DEMO_PHOTOS, DemoPhotos, FolderPhotos, demo_photos

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def photos_from_config(option: str, **overrides) -> DemoPhotos | FolderPhotos:
    """conf/photos/<option>.yaml with the top-level keys it reads (image_size, seed)."""
    node = OmegaConf.load(CONF_DIR / "photos" / f"{option}.yaml")
    cfg = OmegaConf.merge({"image_size": 32, "seed": 0, "photos": node}, {"photos": overrides})
    return instantiate(cfg.photos)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three photos of different sizes, one in a subfolder."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, (path, size) in enumerate([(root / "a.jpg", (80, 60)), (root / "b.png", (50, 90)),
                                      (root / "sub" / "c.png", (120, 120))]):
        Image.new("RGB", size, (40 * i, 100, 200 - 50 * i)).save(path)
    (root / "notes.txt").write_text("not an image")
    return root


def test_every_demo_photo_ships_in_the_installed_wheels():
    photos = demo_photos()
    assert set(photos) == set(DEMO_PHOTOS)
    for path in photos.values():
        with Image.open(path) as image:
            assert image.mode == "RGB" and min(image.size) >= 256  # colour photographs, big enough to crop


def test_demo_config_trains_on_random_crops_and_holds_out_two_photos():
    photos = photos_from_config("demo", steps_per_epoch=3, batch_size=2)
    assert isinstance(photos, DemoPhotos) and photos.held_out == ["chelsea", "astronaut"]
    photos.setup("fit")
    held_out = {demo_photos()[name] for name in photos.held_out}
    assert not held_out & set(photos.train_set.files) and len(photos.train_set.files) == len(DEMO_PHOTOS) - 2
    batches = list(photos.train_dataloader())
    assert len(batches) == 3  # steps_per_epoch, whatever the number of photos
    for batch in batches:
        assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
        assert 0 <= batch.min() and batch.max() <= 1
    assert not torch.equal(batches[0], batches[1])


def test_each_item_is_a_new_random_crop():
    photos = DemoPhotos(image_size=32, steps_per_epoch=2)
    photos.setup()
    torch.manual_seed(0)
    draws = [photos.train_set[0] for _ in range(4)]  # one photo, four crops
    assert all(d.shape == (3, 32, 32) for d in draws)
    assert all(not torch.equal(draws[0], d) for d in draws[1:])


def test_validation_images_are_the_held_out_photos_at_a_fixed_size():
    photos = DemoPhotos(image_size=32, val_size=40, held_out=["chelsea", "astronaut"])
    images = photos.validation_images()
    assert images.shape == (2, 3, 40, 40) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(torch.cat(list(photos.val_dataloader())), images)  # one fixed batch, in order
    cat = images[0]
    assert cat[0].mean() > cat[2].mean()  # chelsea is a ginger cat: more red than blue


def test_held_out_may_be_an_image_file(folder):
    photos = DemoPhotos(image_size=32, held_out=[str(folder / "b.png")])
    assert photos.validation_images().shape == (1, 3, 32, 32)
    photos.setup()
    assert len(photos.train_set.files) == len(DEMO_PHOTOS)  # no demo photo held out


def test_folder_config_reads_every_image_under_root(folder):
    photos = photos_from_config("folder", root=str(folder), batch_size=2, num_workers=0)
    assert isinstance(photos, FolderPhotos)
    photos.setup()
    assert sorted(p.name for p in photos.train_set.files) == ["a.jpg", "b.png", "c.png"]
    assert len(photos.train_set) == 3  # one crop per image and epoch
    (batch,) = list(photos.train_dataloader())  # the last, incomplete batch is dropped
    assert batch.shape == (2, 3, 32, 32)
    assert photos.validation_images().shape == (2, 3, 32, 32)  # the demo photos held out by default


def test_folder_with_steps_per_epoch_draws_many_crops(folder):
    photos = FolderPhotos(root=str(folder), image_size=16, batch_size=4, steps_per_epoch=5)
    photos.setup()
    assert len(list(photos.train_dataloader())) == 5


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "photos.root=.*missing is not a folder; point photos.root at a folder of images"),
    (lambda tmp: tmp, "photos.root=.* holds no images"),
])
def test_missing_or_empty_folder_is_one_clear_error(tmp_path, make, message):
    photos = FolderPhotos(root=str(make(tmp_path)), image_size=32)
    with pytest.raises(UserInputError, match=message):
        photos.setup()


def test_too_few_images_for_a_batch_asks_for_steps_per_epoch(folder):
    photos = FolderPhotos(root=str(folder), image_size=16, batch_size=8)
    with pytest.raises(UserInputError, match="steps_per_epoch"):
        photos.setup()


@pytest.mark.parametrize("kwargs, message", [
    ({"held_out": ["no_such_photo"]}, "neither a demo photo"),
    ({"held_out": []}, "held_out is empty"),
    ({"held_out": list(DEMO_PHOTOS)}, "holds out every demo photo"),
    ({"scale": (0.5, 0.2)}, "scale"),
    ({"image_size": 4}, "image_size=4 must be an integer >= 8"),
    ({"steps_per_epoch": 0}, "steps_per_epoch=0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        photos = DemoPhotos(**{"image_size": 32, **kwargs})
        photos.setup()


def test_a_photo_missing_from_its_wheel_is_skipped_with_a_warning(monkeypatch):
    monkeypatch.setitem(DEMO_PHOTOS, "lost", ("skimage", "data/no_such_photo.png"))
    with pytest.warns(UserWarning, match="demo photo lost .* is not in the installed skimage"):
        photos = demo_photos()
    assert "lost" not in photos and len(photos) == len(DEMO_PHOTOS) - 1
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)  # a package not installed at all
    with pytest.warns(UserWarning):
        assert demo_photos() == {}
