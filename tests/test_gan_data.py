"""GAN data modules: the offline MNIST subset, folders of images, and clear errors for bad data."""

import socket

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from nst_research.data.mnist5k import MNIST5kDataModule, load_mnist5k
from nst_research.errors import UserInputError
from nst_research.gan.task import run as run_gan_task


def run_gan(cfg):
    """Run the task; its results as results.json holds them."""
    return run_gan_task(cfg).to_dict()


@pytest.fixture(scope="module")
def mnist5k():
    return load_mnist5k(seed=0)


def test_mnist5k_has_5000_balanced_digits_in_range(mnist5k):
    images, labels = mnist5k
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert labels.bincount().tolist() == [500] * 10
    assert images.flatten(1).mean(1).median() < -0.6  # dark background, bright strokes: not inverted


def test_mnist5k_is_shuffled_with_the_seed(mnist5k):
    images, labels = mnist5k
    assert labels[:100].unique().numel() == 10  # the file is sorted by class; the first 100 are not
    again, labels_again = load_mnist5k(seed=0)
    assert torch.equal(labels, labels_again) and torch.equal(images, again)
    assert not torch.equal(labels, load_mnist5k(seed=1)[1])


def test_mnist5k_module_from_config(compose_cfg):
    cfg = compose_cfg(["task=gan", "gan=fc", "data=mnist5k", "data.batch_size=32", "metric.samples=100"])
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, MNIST5kDataModule)
    datamodule.setup("fit")
    assert len(datamodule.dataset) == 5000
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and labels.shape == (32,)
    half_a, half_b = datamodule.reference_halves()
    assert half_a.shape == half_b.shape == (100, 1, 28, 28)
    assert not set(datamodule.reference(0).indices) & set(datamodule.reference(1).indices)  # disjoint
    assert torch.equal(torch.cat([b[0] for b in datamodule.val_dataloader()]), half_a)  # validation = half A


def test_mnist5k_resized_for_dcgan64(compose_cfg):
    datamodule = instantiate(compose_cfg(["task=gan", "gan=dcgan64", "gan.image_size=32", "metric.samples=10"]).data)
    datamodule.setup()
    assert datamodule.dataset[0][0].shape == (1, 32, 32)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access blocked by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_missing_offline_data_set_names_mnist5k(compose_cfg, tmp_path, no_network, data):
    cfg = compose_cfg(["task=gan", "gan=fc", f"data={data}", f"data.root={tmp_path / 'empty'}", "logger=none"],
                      output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match=f"cannot download data={data}.*use data=mnist5k") as error:
        run_gan(cfg)
    assert "\n" not in str(error.value)  # one line
    assert not (tmp_path / "run").exists()  # nothing written


def test_channel_mismatch_is_a_clear_error(compose_cfg, tmp_path):
    cfg = compose_cfg(["task=gan", "gan=fc", "data=cifar10", f"data.root={tmp_path}"])
    with pytest.raises(UserInputError, match="gan=fc makes 1x28x28 images but data=cifar10 gives 3x28x28"):
        run_gan(cfg)


def test_image_folder_is_resized_and_cropped(compose_cfg, tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    for i, size in enumerate([(50, 40), (40, 70), (33, 33), (64, 64)]):
        Image.new("RGB", size, (255, 0, 0)).save(folder / ("nested" if i else ".") / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    cfg = compose_cfg(["task=gan", "gan=dcgan64", "gan.image_size=32", "data=image_folder", f"data.root={folder}",
                       "data.batch_size=2", "data.num_workers=0", "metric.samples=2"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    assert len(datamodule.dataset) == 4
    image, _ = datamodule.dataset[1]
    assert image.shape == (3, 32, 32)
    assert image[0].min().item() == 1.0 and image[1].max().item() == -1.0  # red, scaled to [-1, 1]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_image_folder_errors(compose_cfg, tmp_path, make):
    folder = tmp_path / "images"
    if make == "empty":
        folder.mkdir()
    cfg = compose_cfg(["task=gan", "gan=dcgan64", "data=image_folder", f"data.root={folder}"])
    datamodule = instantiate(cfg.data)
    with pytest.raises(UserInputError, match="not a folder" if make == "missing" else "holds no images"):
        datamodule.setup()


def test_image_folder_needs_a_root(compose_cfg, tmp_path):
    cfg = compose_cfg(["task=gan", "gan=dcgan64", "data=image_folder"], output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match="data.root has no value"):
        run_gan(cfg)
    assert not (tmp_path / "run").exists()


def test_train_size_trains_on_that_many_images_apart_from_the_reference(compose_cfg):
    """Low-data experiments: data.train_size=500 trains on 500 digits that the metric's reference sets do not hold."""
    datamodule = instantiate(compose_cfg(["task=gan", "gan=fc", "data.train_size=500"]).data)
    train = datamodule.train_dataloader().dataset
    assert len(train) == 500
    reference = set(datamodule.reference(0).indices) | set(datamodule.reference(1).indices)
    assert len(reference) == 2000 and not reference & set(train.indices)
    too_many = instantiate(compose_cfg(["task=gan", "gan=fc", "data.train_size=6000"]).data)
    with pytest.raises(UserInputError, match="data.train_size=6000: data=mnist5k has only 5000 images"):
        too_many.train_dataloader()
