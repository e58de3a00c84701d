"""Compose -> instantiate -> run: the one place that wires configs to objects.

`run_style_transfer(cfg)` does the work and returns the results it wrote; `main` is the Hydra
entry point that turns a `UserInputError` into one line on stderr and exit status 2.
"""

import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nst_research.errors import UserInputError
from nst_research.features import VGGFeatures
from nst_research.nst.images import MIN_IMAGE_SIZE, save_image
from nst_research.nst.inputs import prepare_inputs
from nst_research.nst.module import StyleTransferModule
from nst_research.nst.objective import StyleTransferObjective, layer_weights
from nst_research.tracking.loggers import finish_loggers, instantiate_loggers
from nst_research.tracking.results import write_results

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # the frozen VGG, by design
warnings.filterwarnings("ignore", ".*treespec.*")  # a Lightning deprecation notice, not ours
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())


def check_run_settings(cfg: DictConfig) -> None:
    for key, minimum in (("iterations", 1), ("save_every", 1), ("image_size", MIN_IMAGE_SIZE)):
        value = cfg[key]
        if not isinstance(value, int) or value < minimum:
            raise UserInputError(f"{key}={value} must be an integer >= {minimum}")


def build_objective(cfg: DictConfig) -> StyleTransferObjective:
    content_layers = layer_weights("content", cfg.layers.content, cfg.layers.get("content_weights"))
    style_layers = layer_weights("style", cfg.layers.style, cfg.layers.get("style_weights"))
    try:
        features = instantiate(cfg.model, layers=list(content_layers) + list(style_layers))
    except InstantiationException as error:  # Hydra wraps the constructor's own error
        if isinstance(error.__cause__, UserInputError):
            raise error.__cause__ from None
        raise
    assert isinstance(features, VGGFeatures)
    return StyleTransferObjective(
        features, content_layers, style_layers,
        content_weight=cfg.content_weight, style_weight=cfg.style_weight, tv_weight=cfg.tv_weight,
        gram_normalization=cfg.gram_normalization, content_reduction=cfg.content_reduction,
        style_loss=cfg.style_loss, normalize_gradients=cfg.normalize_gradients,
    )


def run_style_transfer(cfg: DictConfig) -> dict[str, Any]:
    """Run one style transfer; write result.png, intermediate/, config.yaml and results.json."""
    check_run_settings(cfg)
    output_dir = Path(cfg.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    inputs = prepare_inputs(cfg)
    objective = build_objective(cfg)
    for image in (inputs.content, *inputs.styles):
        objective.features.check_size(image)
    optimizer = instantiate(cfg.optimizer)
    if optimizer.func is torch.optim.LBFGS and str(cfg.trainer.get("precision", "32")) not in ("32", "32-true"):
        raise UserInputError("L-BFGS runs in fp32 only; drop the trainer.precision override or use optimizer=adam")

    output_dir.mkdir(parents=True, exist_ok=True)
    save_image(inputs.content, output_dir / "content.png")
    for i, style in enumerate(inputs.styles):
        save_image(style, output_dir / ("style.png" if len(inputs.styles) == 1 else f"style_{i}.png"))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(resolved)
    module = StyleTransferModule(objective, inputs.content, inputs.styles, inputs.blend, inputs.init, optimizer,
                                 iterations=cfg.iterations, save_every=cfg.save_every, output_dir=output_dir,
                                 chroma=inputs.chroma, masks=inputs.masks)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, default_root_dir=output_dir)
    start = time.perf_counter()
    status = "failed"
    try:
        trainer.fit(module)
        status = "completed"
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    finally:
        results = save_outcome(module, trainer, loggers, status, time.perf_counter() - start, cfg.seed, output_dir)
    return results


def save_outcome(module: StyleTransferModule, trainer: pl.Trainer, loggers: list, status: str,
                 wall_time: float, seed: int, output_dir: Path) -> dict[str, Any]:
    """Save the image as it stands (finished or not) and results.json; end the loggers."""
    try:
        final_losses = module.evaluate() if module.initial_losses else {}
        save_image(module.output_image(), output_dir / "result.png")
        module.log_image("result", trainer.global_step)
        for logger in loggers:
            logger.log_metrics({f"final/{k}": v for k, v in final_losses.items()}, step=trainer.global_step)
    finally:
        finish_loggers(loggers, "success" if status == "completed" else "failed")
    results = {
        "status": status,
        "task": "nst",
        "steps": trainer.global_step,
        "loss_evaluations": module.loss_evaluations,
        "wall_time_s": round(wall_time, 3),
        "seed": seed,
        "image_size": list(module.image.shape[-2:]),
        "device": str(module.device),
        "initial_losses": module.initial_losses,
        "final_losses": final_losses,
        "result": "result.png",
    }
    write_results(output_dir / "results.json", results)
    return results


def remove_unfinished_run_dir(output_dir: Path) -> None:
    """After bad input, remove what Hydra wrote for this run (single runs only), and the directory if then empty."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.RUN or (output_dir / "results.json").exists():
        return
    if hydra_cfg.output_subdir:
        shutil.rmtree(output_dir / hydra_cfg.output_subdir, ignore_errors=True)
    (output_dir / f"{hydra_cfg.job.name}.log").unlink(missing_ok=True)
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the final total loss (for sweepers that minimise it)."""
    try:
        results = run_style_transfer(cfg)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        remove_unfinished_run_dir(Path(cfg.output_dir))
        sys.exit(2)
    print(f"result: {Path(cfg.output_dir) / results['result']}  "
          f"total loss {results['initial_losses']['total']:.4g} -> {results['final_losses']['total']:.4g}  "
          f"({results['steps']} steps, {results['loss_evaluations']} loss evaluations, {results['wall_time_s']:.1f} s)")
    return results["final_losses"]["total"]
