"""`scripts/gan_samples.py <run dir> --interpolate`: the generator rebuilt from its checkpoint alone (the moving
average when the run kept one), a grid (one class per row when conditional) and an interpolation strip, and
bad input as one error line with nothing written."""

import errno

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from nst_research.gan import samples
from nst_research.gan.samples import load_generator, main, slerp
from nst_research.gan.task import make_loss

pytestmark = pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")


def trained_checkpoint(compose_cfg, path, *overrides, classes=None):
    """A GAN checkpoint as the task writes it, after one training batch."""
    cfg = compose_cfg(["task=gan", "gan=fc", *overrides])
    node = {**OmegaConf.to_container(cfg.gan.generator, resolve=True), **({"num_classes": classes} if classes else {})}
    torch.manual_seed(0)
    module = instantiate(cfg.module)(instantiate(node), instantiate(cfg.gan.discriminator, **(
        {"num_classes": classes} if classes else {})), make_loss(cfg.gan), instantiate(cfg.gan.optimizer.generator),
        instantiate(cfg.gan.optimizer.discriminator), generator_config=node)
    reals = TensorDataset(torch.rand(8, 1, 28, 28) * 2 - 1, torch.randint(10, (8,)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=DataLoader(reals, batch_size=4))
    trainer.save_checkpoint(path)
    return module


def test_the_moving_average_is_rebuilt_from_the_checkpoint_alone(compose_cfg, tmp_path):
    module = trained_checkpoint(compose_cfg, tmp_path / "run.ckpt", "gan.ema_decay=0.5", "gan.noise=normal")
    generator, noise = load_generator(tmp_path / "run.ckpt")
    assert noise == "normal"
    for loaded, average, raw in zip(generator.parameters(), module.generator_ema.parameters(),
                                    module.generator.parameters()):
        assert torch.equal(loaded, average) and not torch.equal(loaded, raw)


def test_grid_and_interpolation_of_a_conditional_run(compose_cfg, tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    trained_checkpoint(compose_cfg, tmp_path / "run" / "checkpoints" / "last.ckpt", "gan.conditional=true",
                       classes=10)
    out = tmp_path / "out"
    assert main([str(tmp_path / "run"), "--interpolate", "--n", "20", "--rows", "3", "--steps", "5",
                 "--out", str(out)]) == 0
    assert Image.open(out / "grid.png").size == (2 * 28 + 3 * 2, 10 * 28 + 11 * 2)  # two of each class per row
    assert Image.open(out / "interpolation.png").size == (5 * 28 + 6 * 2, 3 * 28 + 4 * 2)
    assert capsys.readouterr().out.split() == [str(out / "grid.png"), str(out / "interpolation.png")]


def test_slerp_runs_from_one_end_to_the_other_on_the_sphere():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    middle = path[:, 3].norm(dim=1)  # between the ends' norms: no dip towards the origin as a straight line has
    assert (middle > torch.minimum(a.norm(dim=1), b.norm(dim=1)) * 0.9).all()


@pytest.mark.parametrize("make, args, message", [
    ("nothing", [], "does not exist; give a GAN run directory or its .ckpt file"),
    ("empty_run", [], "has no checkpoints/best.ckpt, last.ckpt or interrupted.ckpt"),
    ("other_task", [], "is not a GAN checkpoint"),
    ("garbage", [], "cannot read checkpoint"),
    ("other_task", ["--steps", "1"], "--steps 1 must be at least 2"),
])
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, capsys, make, args, message):
    target = tmp_path / "given"
    if make == "empty_run":
        target.mkdir()
    elif make == "other_task":
        target = tmp_path / "other.ckpt"
        torch.save({"state_dict": {}, "hyper_parameters": {"network": {}}}, target)
    elif make == "garbage":
        target = tmp_path / "garbage.ckpt"
        target.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    assert main([str(target), *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert not out.exists()


def test_a_full_disk_is_one_error_line_with_exit_status_1(compose_cfg, tmp_path, capsys, monkeypatch):
    """The machine's fault, not the input's: the same one line as every other command gives."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    trained_checkpoint(compose_cfg, tmp_path / "run" / "checkpoints" / "last.ckpt")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "grid.png"))

    monkeypatch.setattr(samples, "save_image", full_disk)
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: no space left on the disk ({tmp_path / 'out' / 'grid.png'}); free some space, then run "
                     "the command again"]
