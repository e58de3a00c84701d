"""Shared fixtures: Hydra composition, the command line, a random VGG19 state dict on disk.

No test touches the network: W&B runs offline (its config and cache directories under a
temporary folder) and torchvision downloads are blocked where a test asks for them.
"""

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
RUN_SCRIPT = REPO / "scripts" / "run.py"

# Set at import, before any test or subprocess can start W&B.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("HYDRA_FULL_ERROR", None)  # the CLI tests check the short, user-facing error


@pytest.fixture(scope="session", autouse=True)
def _wandb_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Keep W&B's settings, cache and data, and the project's cache, out of the home directory."""
    root = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            (root / name).mkdir()
            mp.setenv(name, str(root / name))
        mp.delenv("WANDB_API_KEY", raising=False)
        # the GAN metric's classifier (and other caches) in the session's temporary folder, trained once
        mp.setenv("NST_RESEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "classifier_cache"))
        yield


def compose_config(overrides: list[str] | tuple[str, ...], output_dir: Path) -> DictConfig:
    """The primary config as the app would see it, writing to `output_dir`, with style transfer in fp32
    (`precision=32`) unless the overrides set `precision=`: the default, auto, computes in bf16 or fp32 by the
    CPU, and a test must check the same numbers on every machine (tests/test_precision.py tests auto).

    (The default `output_dir: ${hydra:runtime.output_dir}` only resolves inside a Hydra run.)
    """
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, f"output_dir={output_dir}"])
    if "precision" in cfg and not any(override.lstrip("+~").startswith("precision=") for override in overrides):
        cfg.precision = 32
    return cfg


def half_masks(folder: Path, size: int) -> str:
    """Two masks of a `size` px square, its left half and its right half, saved in `folder`: the `masks=`
    override that gives the first style the left of the image and the second the right."""
    left, right = Image.new("L", (size, size), 0), Image.new("L", (size, size), 0)
    left.paste(255, (0, 0, size // 2, size))
    right.paste(255, (size // 2, 0, size, size))
    left.save(folder / "left.png")
    right.save(folder / "right.png")
    return f"masks=[{folder / 'left.png'},{folder / 'right.png'}]"


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`compose_cfg(overrides, output_dir=None)`; `output_dir` defaults to the test's tmp_path."""

    def _compose(overrides: list[str] | tuple[str, ...] = (), output_dir: Path | None = None) -> DictConfig:
        return compose_config(overrides, tmp_path if output_dir is None else output_dir)

    return _compose


@pytest.fixture(scope="session")
def compose_at() -> Callable[[list[str], Path], DictConfig]:
    """`compose_at(overrides, output_dir)` for module- or session-scoped fixtures."""
    return compose_config


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`run_cli(*overrides, timeout=..., env=..., cwd=...)`: `python scripts/run.py ...` from the repository root
    (or `cwd`, where its default outputs/ then goes), with `env` added to this process's environment."""

    def _run(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
             cwd: Path = REPO) -> subprocess.CompletedProcess:
        env = {**os.environ, **(env or {})}
        env.pop("HYDRA_FULL_ERROR", None)
        return subprocess.run([sys.executable, str(RUN_SCRIPT), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)

    return _run


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def random_vgg19_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], str]:
    """A random VGG19 `features` state dict saved to disk: (path, state dict, sha256)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1234)
    features = make_layers(cfgs["E"], batch_norm=False)  # torchvision's vgg19().features, without the classifier
    with torch.no_grad():
        for module in features:
            if isinstance(module, torch.nn.Conv2d):
                module.bias.uniform_(-0.1, 0.1)  # non-zero biases, so the bias folding is exercised
    state = {k: v.clone() for k, v in features.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "vgg19_random.pth"
    torch.save(state, path)
    return path, state, file_sha256(path)


def gatys_objective(features: torch.nn.Module, content_layers: dict[str, float], style_layers: dict[str, float], *,
                    content_weight: float = 1.0, style_weight: float = 1e6, tv_weight: float = 0.0,
                    gram_normalization: str = "chw", content_reduction: str = "mean", style_loss: str = "gram",
                    normalize_gradients: bool = False):
    """The default objective's three terms built by hand (as conf/term/*.yaml builds them), for unit tests."""
    from nst_research.nst import style_losses, terms
    from nst_research.nst.objective import StyleTransferObjective

    loss = {"gram": lambda: style_losses.GramStyleLoss(gram_normalization), "mean_std": style_losses.MeanStdStyleLoss,
            "wasserstein": style_losses.WassersteinStyleLoss}[style_loss]()
    return StyleTransferObjective(features, {
        "content": terms.ContentTerm(list(content_layers), list(content_layers.values()), content_weight,
                                     content_reduction, normalize_gradients),
        "style": terms.StyleTerm(loss, list(style_layers), list(style_layers.values()), style_weight,
                                 normalize_gradients),
        "tv": terms.TVTerm(tv_weight),
    })
