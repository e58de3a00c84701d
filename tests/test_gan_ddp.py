"""GAN training under DDP on CPU (`trainer=ddp_cpu`, two processes) gives one run's outputs, each process
trains on its own shard of the data, and the metric is a one-device run's; style transfer refuses DDP."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from ddp_probe import fingerprint
from hydra.utils import instantiate

from nst_research.data.mnist5k import load_mnist5k
from nst_research.errors import UserInputError
from nst_research.gan.task import check_launch
from nst_research.gan.task import run as run_gan_task
from nst_research.nst.checks import check_one_device


def run_gan(cfg):
    """Run the task; its results as results.json holds them."""
    return run_gan_task(cfg).to_dict()


BATCHES, BATCH_SIZE = 3, 64
TINY = ["task=gan", "gan=fc", "trainer.max_epochs=1", f"+trainer.limit_train_batches={BATCHES}", "metric.samples=64",
        "grid_size=16"]


# with every stabiliser on: none changes the untrained generator, so the metric still equals a plain one-device run's
STABILISERS = ["gan.ema_decay=0.9", "gan.discriminator.spectral_norm=true", "gan.augment=diffaugment",
               "gan.losses.bce.r1_weight=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "classifier_cache"  # shared with test_gan_metric


@pytest.fixture(scope="module")
def ddp_run(run_cli, tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("gan_ddp")
    run_dir, probe_dir = root / "run", root / "probe"
    result = run_cli(*TINY, *STABILISERS, "trainer=ddp_cpu", "trainer.devices=2", "trainer.log_every_n_steps=2",
                     f"metric.cache_dir={cache}", f"hydra.run.dir={run_dir}",
                     "+callbacks.probe._target_=ddp_probe.RecordBatches", f"+callbacks.probe.out_dir={probe_dir}",
                     env={"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get("PYTHONPATH")]))})
    return result, run_dir, probe_dir


def test_two_processes_write_one_run(ddp_run):
    result, run_dir, _ = ddp_run
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("result: ")]
    assert len(summaries) == 1 and summaries[0].startswith(f"result: {run_dir / 'samples.png'}")  # rank zero's
    assert [p.relative_to(run_dir) for p in run_dir.rglob("results.json")] == [Path("results.json")]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["processes"] == 2
    assert results["generator_steps"] == BATCHES  # per process: each trains on its own batches
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run, not one per process
    assert len(list(run_dir.rglob("offline-run-*"))) == 1
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000000.png"]


def test_training_values_are_logged_on_logged_steps(ddp_run):
    """Every process hands its values (averaged over the processes) to Lightning on the same steps only."""
    _, run_dir, _ = ddp_run
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows if row.get("train/d_loss")] == [2]  # the second of 3 batches (its G step)


def test_each_process_trains_on_its_own_shard(ddp_run):
    _, _, probe_dir = ddp_run
    records = [json.loads((probe_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [(r["rank"], r["world_size"], r["sampler"]) for r in records] == [(0, 2, "DistributedSampler"),
                                                                              (1, 2, "DistributedSampler")]
    images, _ = load_mnist5k(seed=0)
    dataset = {fingerprint(image) for image in images}
    seen = [set(r["images"]) for r in records]
    for record, images_seen in zip(records, seen):
        assert len(record["images"]) == len(images_seen) == BATCHES * BATCH_SIZE
        assert images_seen <= dataset  # real training images, as loaded
    assert not seen[0] & seen[1]  # disjoint shards


def test_metric_is_the_one_device_value(ddp_run, compose_cfg, cache):
    """Rank zero scores the whole validation set: the untrained generator's distance equals a one-device run's."""
    _, run_dir, _ = ddp_run
    ddp = json.loads((run_dir / "results.json").read_text())["frechet_distance"]
    one_device = run_gan(compose_cfg([*TINY, "trainer.max_epochs=0", "logger=none", f"metric.cache_dir={cache}"]))
    assert ddp["initial"] == one_device["frechet_distance"]["initial"]
    assert ddp["samples"] == 64 and ddp["final"] > 0


@pytest.mark.parametrize("overrides", [["trainer=ddp_cpu"], ["trainer=ddp"], ["trainer.devices=2"],
                                       ["+trainer.num_nodes=2"], ["+trainer.strategy=ddp"]])
def test_style_transfer_refuses_several_devices(compose_cfg, overrides):
    with pytest.raises(UserInputError, match="task=nst optimises one image on one device.*use trainer=default"):
        check_one_device(compose_cfg(overrides).trainer)


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "mps"])
def test_style_transfer_takes_one_device_presets(compose_cfg, trainer):
    check_one_device(compose_cfg([f"trainer={trainer}"]).trainer)


def test_style_transfer_with_ddp_is_a_one_line_error(run_cli, tmp_path):
    result = run_cli("trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: task=nst optimises one image on one device, but the trainer asks for strategy="
        "ddp_find_unused_parameters_true devices=2 num_nodes=1; use trainer=default, cpu, gpu or mps"]
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_is_a_one_line_error(compose_cfg, tmp_path, cache):
    cfg = compose_cfg([*TINY, "trainer=ddp", "logger=none", f"metric.cache_dir={cache}"], output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match="^trainer: .*; choose a trainer this machine supports, e.g. trainer=cpu"):
        run_gan(cfg)
    assert not (tmp_path / "run").exists()


def test_ddp_inside_a_multirun_is_refused(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "trainer=ddp_cpu", "+sweep.job=0"])
    trainer = instantiate(cfg.trainer, logger=False, default_root_dir=tmp_path)  # no processes start here
    with pytest.raises(UserInputError, match="cannot run inside a multirun"):
        check_launch(cfg, trainer)
    check_launch(compose_cfg([*TINY, "trainer=ddp_cpu"]), trainer)  # a single run is fine
