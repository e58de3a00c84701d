"""End to end: `python scripts/run.py task=gan ...` with a tiny budget, and bad GAN settings."""

import csv
import json

import pytest
import torch
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.gan.module import GANModule
from nst_research.gan.task import run as run_gan_task


def run_gan(cfg):
    """Run the task; its results as results.json holds them."""
    return run_gan_task(cfg).to_dict()


EPOCHS, BATCHES = 2, 4
STABILISERS = ["gan.ema_decay=0.9", "gan.discriminator.spectral_norm=true", "gan.augment=diffaugment",
               "gan.losses.hinge.r1_weight=1"]


@pytest.fixture(scope="module")
def cli_run(run_cli, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "classifier_cache"  # shared with test_gan_metric
    run_dir = tmp_path_factory.mktemp("gan_cli") / "run"
    result = run_cli("task=gan", "gan=fc", "gan.loss=hinge", "gan.d_steps=2", "gan.gradient_clip_val=1.0", *STABILISERS,
                     f"trainer.max_epochs={EPOCHS}", f"+trainer.limit_train_batches={BATCHES}", "metric.samples=64",
                     "sample_every=1", "grid_size=16", "trainer.log_every_n_steps=1", f"metric.cache_dir={cache}",
                     f"hydra.run.dir={run_dir}")
    return result, run_dir


def test_cli_run_succeeds_and_reports(cli_run):
    result, run_dir = cli_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"result: {run_dir / 'samples.png'}" in result.stdout
    assert "Frechet distance" in result.stdout and "real-vs-real floor" in result.stdout


def test_cli_run_results_json(cli_run):
    _, run_dir = cli_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["task"] == "gan"
    assert (results["gan"], results["loss"], results["data"], results["seed"]) == ("fc", "hinge", "mnist5k", 0)
    assert results["epochs"] == EPOCHS
    assert results["discriminator_steps"] == EPOCHS * BATCHES
    assert results["generator_steps"] == EPOCHS * BATCHES // 2  # d_steps=2
    assert results["wall_time_s"] > 0
    assert {"d_loss", "g_loss", "d_real", "d_fake", "r1_penalty"} <= set(results["final_losses"])
    metric = results["frechet_distance"]
    for key in ("initial", "final", "best", "floor"):
        assert isinstance(metric[key], float) and metric[key] >= 0, key
    assert metric["best"] <= metric["final"] + 1e-6 and metric["floor"] < metric["initial"]
    assert metric["classifier_accuracy"] >= 0.95 and metric["samples"] == 64
    knn = results["sample_metrics"]
    assert knn["k"] == 5
    for key in ("initial", "final", "real_vs_real"):
        assert set(knn[key]) == {"precision", "recall", "density", "coverage"}, key
        assert all(0 <= value <= 1 for name, value in knn[key].items() if name != "density"), knn
    assert knn["real_vs_real"]["recall"] > knn["initial"]["recall"]  # the untrained generator lacks variety
    assert results["result"] == "samples.png"


def test_cli_run_files(cli_run):
    _, run_dir = cli_run
    assert Image.open(run_dir / "samples.png").size == (4 * 28 + 5 * 2,) * 2  # 4x4 grid, 2 px padding
    steps = sorted(p.name for p in (run_dir / "samples").glob("*.png"))
    assert steps[0] == "step_000000.png" and f"step_{EPOCHS * BATCHES // 2:06d}.png" in steps
    assert (run_dir / "config.yaml").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoints"] == {"last": "checkpoints/last.ckpt", "best": "checkpoints/best.ckpt"}
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["gan_steps"] == {"generator": 4, "discriminator": 8}
    weights = checkpoint["state_dict"]
    assert any(key.startswith("generator.") for key in weights)
    averaged = [key for key in weights if key.startswith("generator_ema.")]  # the moving average, kept for resume
    assert averaged and not torch.equal(weights[averaged[0]], weights[averaged[0].replace("_ema", "")])
    assert any(key.endswith("parametrizations.weight.original") for key in weights)  # spectral norm


def test_cli_run_logs(cli_run):
    _, run_dir = cli_run
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/frechet_distance", "val/precision",
            "val/recall", "val/density", "val/coverage"} <= logged
    assert len([row for row in rows if row.get("val/frechet_distance")]) == EPOCHS + 2  # before, each epoch, after
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    assert list(wandb_runs[0].glob("files/media/images/samples_*.png"))  # the grid, sent as a W&B image


def test_failed_run_still_writes_results(compose_cfg, tmp_path, tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "classifier_cache"
    cfg = compose_cfg(["task=gan", "gan=fc", "logger=csv", "metric.samples=32", f"metric.cache_dir={cache}"])

    def diverge(self, batch, batch_idx):
        raise FloatingPointError("the losses diverged")

    monkeypatch.setattr(GANModule, "training_step", diverge)
    with pytest.raises(FloatingPointError):
        run_gan(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed" and results["generator_steps"] == 0
    assert results["frechet_distance"]["initial"] > 0 and results["frechet_distance"]["final"] is None
    assert (tmp_path / "samples.png").is_file()


@pytest.mark.parametrize("override, message", [
    ("gan.d_steps=0", "gan.d_steps=0 must be an integer >= 1"),
    ("gan.noise=cauchy", "gan.noise=cauchy: choose uniform or normal"),
    ("gan.loss=wgan", "gan.loss=wgan is not a GAN loss"),
    ("gan.image_size=48", "image_size=48: DCGAN64 makes 32x32 or 64x64 images"),
    ("metric.k=1000", "metric.samples=1000 must be above metric.k=1000"),
    ("gan=_common", "gan.generator or gan.discriminator is not set; choose a gan= option that sets both"),
])
def test_bad_settings_are_clear_errors(compose_cfg, tmp_path, override, message):
    gan = "gan=dcgan64" if "image_size" in override else "gan=fc"
    overrides = [override] if override.startswith("gan=") else [gan, override]
    cfg = compose_cfg(["task=gan", *overrides, "logger=none"], output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match=message):
        run_gan(cfg)
    assert not (tmp_path / "run").exists()


def test_resume_continues_from_the_last_checkpoint(cli_run, run_cli):
    """Runs last in this file: it extends the shared run by one epoch."""
    _, run_dir = cli_run
    before = json.loads((run_dir / "results.json").read_text())
    result = run_cli(f"resume={run_dir}", f"trainer.max_epochs={EPOCHS + 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exists and is not empty" not in result.stderr  # its own checkpoints/: Lightning's warning is not news
    after = json.loads((run_dir / "results.json").read_text())
    assert after["status"] == "completed" and after["epochs"] == EPOCHS + 1
    assert after["discriminator_steps"] == (EPOCHS + 1) * BATCHES  # counted on from the checkpoint
    assert after["frechet_distance"]["initial"] == before["frechet_distance"]["initial"]
    assert after["wall_time_s"] > before["wall_time_s"]
