"""Training a stylising network with Lightning: logs, sample grids, checkpoints that rebuild it, resume.

The objective is the composed one, with random VGG19 weights and shallow layers: the pictures do not
matter here, only that the network learns to lower the objective and that every output appears.
"""

import csv
import functools
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from nst_research.errors import RunDiverged
from nst_research.features import VGGFeatures
from nst_research.feedforward import module as module_file
from nst_research.feedforward.checkpoint import load_network
from nst_research.feedforward.data import DemoPhotos
from nst_research.feedforward.module import FeedForwardModule
from nst_research.nst.images import load_image
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.style_losses import GramStyleLoss
from nst_research.nst.terms import ContentTerm, StyleTerm, TVTerm

pytestmark = pytest.mark.filterwarnings("ignore:.*random.*:UserWarning")
NETWORK = {"_target_": "nst_research.feedforward.network.JohnsonNet", "width": 4, "blocks": 1}
SIZE, STEPS_PER_EPOCH = 32, 3


def objective() -> StyleTransferObjective:
    features = VGGFeatures(["relu1_1", "relu2_1"], weights="random")
    return StyleTransferObjective(features, {
        "content": ContentTerm(["relu2_1"]),
        "style": StyleTerm(GramStyleLoss(), ["relu1_1", "relu2_1"], weight=1e5),
        "tv": TVTerm(1.0),
    })


def make_module(photos: DemoPhotos, output_dir: Path) -> FeedForwardModule:
    style = load_image("coffee", long_side=SIZE)
    return FeedForwardModule(NETWORK, objective(), functools.partial(torch.optim.Adam, lr=1e-2), styles=[style],
                             blend=[1.0], samples=photos.validation_images(), sample_every=4, output_dir=output_dir)


def make_trainer(run_dir: Path, max_epochs: int) -> pl.Trainer:
    """Checkpoints: the best by validation loss, and the latest (save_last=True would update last.ckpt only when
    the best improves)."""
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/total")
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last")
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, callbacks=[best, last],
                      logger=CSVLogger(run_dir, name="csv", version=""),
                      log_every_n_steps=1, num_sanity_val_steps=0, enable_progress_bar=False,
                      enable_model_summary=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of three steps (batch 2, 32 px); validation after each; grids every 4 steps."""
    run_dir = tmp_path_factory.mktemp("run")
    pl.seed_everything(0)
    photos = DemoPhotos(image_size=SIZE, batch_size=2, steps_per_epoch=STEPS_PER_EPOCH)
    photos.setup()
    module = make_module(photos, run_dir)
    images = []  # what W&B would receive: (key, step, with the step's losses, grid shape)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module_file, "log_images", lambda loggers, key, grids, step, with_metrics=False:
                      images.append((key, step, with_metrics, tuple(grids[0].shape))))
        make_trainer(run_dir, max_epochs=2).fit(module, datamodule=photos)
    return run_dir, module, photos, images


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_logs_every_term_for_training_and_validation(trained):
    run_dir, module, _, _ = trained
    rows = metrics(run_dir)
    keys = set(rows[0])
    for split in ("train", "val"):
        assert {f"{split}/{term}" for term in ("total", "content", "style", "tv", "style/relu1_1")} <= keys
    assert [row["step"] for row in rows if row["train/total"]] == [str(s) for s in range(1, 7)]  # every step
    assert [row["step"] for row in rows if row["val/total"]] == ["3", "6"]  # after each epoch


def test_training_lowers_the_held_out_loss(trained):
    _, module, _, _ = trained
    initial, final = module.initial_losses, module.evaluate()
    assert set(initial) == set(final) >= {"total", "content", "style", "tv"}
    assert final["total"] < 0.9 * initial["total"], (initial, final)
    assert final["style"] < initial["style"]


def test_sample_grids_show_the_held_out_images_over_their_stylisations(trained):
    run_dir, module, photos, images = trained
    saved = sorted(p.name for p in (run_dir / "samples").iterdir())
    assert saved == ["step_000000.png", "step_000004.png", "step_000006.png"]  # start, every 4 steps, end
    grid = Image.open(run_dir / "samples" / "step_000006.png")
    assert grid.size == (2 * (SIZE + 2) + 2, 2 * (SIZE + 2) + 2)  # two held-out images, two rows
    grid_shape = (3, grid.size[1], grid.size[0])
    assert images == [("samples", 0, False, grid_shape), ("samples", 4, True, grid_shape),  # step 4: in its row
                      ("samples", 6, False, grid_shape)]  # after the last step's row
    top_left = torch.tensor(list(grid.crop((2, 2, 2 + SIZE, 2 + SIZE)).getdata()), dtype=torch.float32) / 255
    expected = photos.validation_images()[0].permute(1, 2, 0).reshape(-1, 3)
    assert (top_left - expected).abs().max() < 1 / 255 + 1e-6  # the first held-out image, as is


def test_checkpoint_rebuilds_the_network_alone(trained):
    run_dir, module, _, _ = trained
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert checkpoint["hyper_parameters"]["network"] == NETWORK
        assert not any(key.startswith("objective.") for key in checkpoint["state_dict"])  # no VGG weights
    network = load_network(run_dir / "checkpoints" / "last.ckpt")
    image = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(network(image), module.network.eval()(image))


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # resumed into a new folder, so both can be read
def test_resume_continues_the_steps_and_keeps_the_initial_losses(trained, tmp_path):
    run_dir, module, photos, _ = trained
    resumed = make_module(photos, tmp_path)
    trainer = make_trainer(tmp_path, max_epochs=3)
    trainer.fit(resumed, datamodule=photos, ckpt_path=run_dir / "checkpoints" / "last.ckpt")
    assert trainer.global_step == 3 * STEPS_PER_EPOCH
    assert resumed.initial_losses == module.initial_losses
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000008.png", "step_000009.png"]


class NonFinite(torch.nn.Module):
    """An objective whose loss is not finite."""

    def set_styles(self, styles, blend):
        pass

    def set_content(self, content):
        pass

    def forward(self, images):
        return {"total": images.mean() * float("nan")}


def test_a_non_finite_loss_stops_training(tmp_path):
    photos = DemoPhotos(image_size=16, batch_size=1, steps_per_epoch=2)
    module = FeedForwardModule(NETWORK, NonFinite(), torch.optim.Adam, styles=[torch.rand(1, 3, 16, 16)], blend=[1.0],
                               samples=torch.rand(1, 3, 16, 16))
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with pytest.raises(RunDiverged, match="training loss became nan at step 1"):
        trainer.fit(module, datamodule=photos)


@pytest.mark.parametrize("budget", [{"max_steps": 3, "max_epochs": -1}, {"max_steps": -1, "max_epochs": 1}])
def test_validation_follows_the_last_step(tmp_path, budget):
    """Validation every 2 steps counted across epochs, and after the last step (3) whether steps or epochs end
    the training: the final network is always scored."""
    photos = DemoPhotos(image_size=SIZE, batch_size=2, steps_per_epoch=STEPS_PER_EPOCH)
    trainer = pl.Trainer(**budget, val_check_interval=2, check_val_every_n_epoch=None, accelerator="cpu", devices=1,
                         logger=CSVLogger(tmp_path, name="csv", version=""), log_every_n_steps=1,
                         num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(make_module(photos, None), datamodule=photos)
    assert trainer.global_step == 3
    assert [row["step"] for row in metrics(tmp_path) if row["val/total"]] == ["2", "3"]
