"""Every shipped experiment composes, sweeps what it claims to, and runs one tiny job."""

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from nst_research.app import task_module

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
TINY = {"nst": ["image_size=32", "iterations=2"],
        "gan": ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "metric.samples=64"]}


def sweep_values(experiment: str) -> dict[str, list[str]]:
    """The experiment's `hydra.sweeper.params`, each expanded into the values its jobs get."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    parser = OverridesParser.create()
    return {key: list(parser.parse_override(f"{key}={value}").sweep_string_iterator())
            for key, value in cfg.hydra.sweeper.params.items()}


def test_experiments_are_shipped():
    assert {"lbfgs_vs_adam", "layer_depth", "style_layers", "style_weight_sweep", "gan_fc_vs_dcgan", "gan_ema",
            "gan_diffaugment_low_data", "gan_spectral_norm", "gan_conditional"} <= set(EXPERIMENTS)


THREE_SEEDS = {"seed": ["0", "1", "2"]}


@pytest.mark.parametrize("experiment, swept", [
    ("gan_ema", {"gan.ema_decay": ["null", "0.95"], **THREE_SEEDS}),
    ("gan_diffaugment_low_data", {"data.train_size": ["500", "null"], "gan.augment": ["null", "diffaugment"],
                                  **THREE_SEEDS}),
    ("gan_spectral_norm", {"gan.discriminator.spectral_norm": ["False", "True"], **THREE_SEEDS}),
    ("gan_conditional", {"gan.conditional": ["True", "False"], **THREE_SEEDS}),
])
def test_gan_experiments_sweep_their_option(experiment, swept):
    values = sweep_values(experiment)
    assert values == swept
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", *(f"{k}={v[-1]}" for k, v in swept.items())])
    assert cfg.task == "gan"
    if experiment == "gan_spectral_norm":
        assert cfg.gan.loss == "hinge" and cfg.gan.discriminator.spectral_norm is True
    if experiment == "gan_diffaugment_low_data":  # the same 156 generator steps whatever the data's size
        assert (cfg.trainer.max_steps, cfg.gan.augment, cfg.data.train_size) == (312, "diffaugment", None)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_sweeps_several_jobs_into_its_own_directory(experiment):
    values = sweep_values(experiment)
    assert values and all(len(v) >= 2 for v in values.values()), values
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert experiment in cfg.hydra.sweep.dir
    assert cfg.hydra.mode == RunMode.MULTIRUN  # it sweeps with or without -m, as an Optuna search does


def test_an_experiment_without_multirun_flag_runs_its_sweep(run_cli, tmp_path):
    """`python scripts/run.py experiment=lbfgs_vs_adam` (no -m) runs the sweep's jobs, not one run of its first
    values (here the sweep narrowed to two tiny jobs)."""
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    result = run_cli("experiment=lbfgs_vs_adam", "hydra.sweeper.params.optimizer=adam", "iterations=1",
                     "image_size=32", "logger=csv", f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not run_dir.exists()
    results = [json.loads((sweep_dir / job / "results.json").read_text()) for job in ("0", "1")]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert {yaml.safe_load((sweep_dir / job / "config.yaml").read_text())["init"] for job in ("0", "1")} == {
        "content", "noise"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_one_tiny_job(experiment, compose_cfg, tmp_path, tmp_path_factory):
    first_job = [f"{key}={choices[0]}" for key, choices in sweep_values(experiment).items()]
    task = compose_cfg([f"experiment={experiment}", *first_job], tmp_path).task
    cache = tmp_path_factory.getbasetemp() / "classifier_cache"  # the GAN metric's classifier, shared with its tests
    extra = [*TINY[task], f"metric.cache_dir={cache}"] if task == "gan" else TINY[task]
    cfg = compose_cfg([f"experiment={experiment}", *first_job, *extra, "logger=csv"], tmp_path)
    results = task_module(cfg.task).run(cfg).to_dict()
    assert results["status"] == "completed"
    assert (tmp_path / results["result"]).is_file()


def test_layer_depth_reconstructs_content_only():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=layer_depth"])
    assert cfg.style_weight == 0 and cfg.init == "noise"
    assert sweep_values("layer_depth")["layers.content"] == [
        f"[conv{i}_2]" for i in range(1, 6)]
