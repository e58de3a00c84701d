"""Style transfer as a task: compose the objective from the config, optimise, save the outcome.

`run(cfg)` does the work and returns the results it wrote to results.json; `summary` and `score`
report them (see `nst_research.app`). With `batch_sweep=true` it runs a batched sweep instead
(`nst_research.nst.batched`): one run directory per element, and the elements' results.
"""

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, ListConfig, OmegaConf

from nst_research.errors import RunDiverged, UserInputError
from nst_research.features import VGGFeatures
from nst_research.nst.averaging import check_decay
from nst_research.nst.images import MIN_IMAGE_SIZE, save_image
from nst_research.nst.inputs import StyleTransferInputs, prepare_inputs
from nst_research.nst.module import StyleTransferModule
from nst_research.nst.multiscale import scale_sizes, scale_steps, upsample
from nst_research.nst.objective import StyleTransferObjective, layer_weights
from nst_research.tracking.loggers import finish_loggers, instantiate_loggers
from nst_research.tracking.results import write_results

BATCH_KEYS = ("style_weight", "content_weight", "tv_weight", "seed")  # what a batched sweep may vary


def check_run_settings(cfg: DictConfig) -> None:
    for key, minimum in (("iterations", 1), ("save_every", 1), ("image_size", MIN_IMAGE_SIZE)):
        value = cfg[key]
        if not isinstance(value, int) or value < minimum:
            raise UserInputError(f"{key}={value} must be an integer >= {minimum}")
    check_decay(cfg.ema_decay)
    for key in BATCH_KEYS:
        if isinstance(cfg[key], ListConfig):
            raise UserInputError(f"{key}={cfg[key]} is a list: add batch_sweep=true to optimise one image per value "
                                 f"in one batch (Adam or SGD), or sweep it with -m {key}=...,...")


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


def allow_tf32(allowed: bool) -> None:
    """TF32 matrix products and convolutions on NVIDIA GPUs (Ampere and later) for Adam and SGD; exact fp32
    for L-BFGS, whose curvature pairs are differences of gradients. Nothing changes on other devices."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def at_size(cfg: DictConfig, size: int) -> DictConfig:
    """The config with `image_size` set to one scale's size."""
    return OmegaConf.merge(cfg, {"image_size": size})


def divergence_hint(cfg: DictConfig, step: int) -> str:
    """The likely cause of a non-finite loss, and the override that usually fixes it."""
    if step <= 1:
        return ("the starting image's loss is already not finite: the loss weights overflow float32; "
                f"lower them (style_weight={cfg.style_weight}, content_weight={cfg.content_weight})")
    if cfg.optimizer._target_.endswith("LBFGS"):
        return "L-BFGS overshot: try optimizer.line_search_fn=strong_wolfe, smaller loss weights, or optimizer=adam"
    return f"the learning rate is likely too high: try a smaller optimizer.lr (it is {cfg.optimizer.lr})"


def load_resume(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint and results.json of an interrupted (or finished) run, to continue it."""
    checkpoint, results = run_dir / "checkpoint.pt", run_dir / "results.json"
    if not checkpoint.is_file():
        raise UserInputError(f"resume={run_dir}: no checkpoint.pt there; give the directory of a style-transfer run")
    previous = json.loads(results.read_text()) if results.is_file() else {}
    return torch.load(checkpoint, map_location="cpu", weights_only=True), previous


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one style transfer, one scale after another; write result.png, intermediate/, checkpoint.pt,
    config.yaml and results.json. Every scale's inputs are checked before anything is written.
    With `resume` (a run directory), continue that run from its checkpoint up to the requested steps."""
    if cfg.get("batch_sweep"):
        from nst_research.nst.batched import run_batched  # imported here: it builds on this module
        return run_batched(cfg)
    check_run_settings(cfg)
    sizes = scale_sizes(cfg.image_size, cfg.multiscale.min_size, cfg.multiscale.factor)
    steps = scale_steps(sizes, cfg.iterations, cfg.multiscale.iterations)
    output_dir = Path(cfg.output_dir)
    checkpoint, previous = load_resume(Path(cfg.resume)) if cfg.get("resume") else (None, {})
    first = checkpoint["scale"] if checkpoint else 0
    if checkpoint and (first >= len(sizes) or checkpoint["scale_steps"] >= steps[first]):
        raise UserInputError(f"resume={cfg.resume}: that run already has {checkpoint['run_step']} steps; "
                             "ask for more (e.g. iterations=...) with the same image_size and multiscale settings")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    scales = [prepare_inputs(at_size(cfg, size)) for size in sizes]
    objective = build_objective(cfg)
    for inputs in scales:
        for image in (inputs.content, *inputs.styles):
            objective.features.check_size(image)
    if checkpoint and checkpoint["image"].shape != scales[first].content.shape:
        raise UserInputError(f"resume={cfg.resume}: the saved image is {list(checkpoint['image'].shape[-2:])} px "
                             "but these settings give another size; keep image_size and multiscale as they were")
    optimizer = instantiate(cfg.optimizer)
    lbfgs = optimizer.func is torch.optim.LBFGS
    if lbfgs and str(cfg.trainer.get("precision", "32")) not in ("32", "32-true"):
        raise UserInputError("L-BFGS runs in fp32 only; drop the trainer.precision override or use optimizer=adam")
    allow_tf32(not lbfgs)
    if cfg.compile:
        objective.compile()

    loggers = start_run_dir(cfg, scales[-1])
    done: list[dict[str, Any]] = previous.get("scales", [])[:first]  # records of the finished coarser scales
    module: StyleTransferModule | None = None
    start = time.perf_counter() - previous.get("wall_time_s", 0.0)
    status, error = "failed", None
    try:
        for k in range(first, len(scales)):
            inputs = scales[k]
            if module is not None:  # carry the coarser result up to this scale
                done.append(scale_record(module, loggers))
                save_image(module.output_image(), output_dir / "intermediate" / f"scale_{max(module.image.shape[-2:])}px.png")
            resume = checkpoint if checkpoint and k == first else None
            if len(scales) > 1:
                print(f"scale {k + 1}/{len(scales)}: {max(inputs.content.shape[-2:])} px, {steps[k]} steps")
            init = (resume["image"] if resume else inputs.init) if module is None else upsample(
                module.current_image(), inputs.content)
            module = StyleTransferModule(objective, inputs.content, inputs.styles, inputs.blend, init, optimizer,
                                         iterations=steps[k] - (resume["scale_steps"] if resume else 0),
                                         save_every=cfg.save_every, output_dir=output_dir,
                                         chroma=inputs.chroma, masks=inputs.masks,
                                         step_offset=sum(r["steps"] for r in done), ema_decay=cfg.ema_decay,
                                         scale=k, resume=resume)
            trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, default_root_dir=output_dir)
            trainer.fit(module)
        status = "completed"
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    except RunDiverged as diverged:
        status = "diverged"
        error = f"{diverged}; {divergence_hint(cfg, diverged.step)}; the last finite image is in {output_dir}/result.png"
        raise RunDiverged(error, diverged.step) from None
    finally:
        results = save_outcome(module, done, loggers, status, time.perf_counter() - start, cfg.seed, output_dir, error)
    return results


def start_run_dir(cfg: DictConfig, inputs: StyleTransferInputs) -> list[Logger]:
    """Write the inputs as the network sees them and the resolved config.yaml into `cfg.output_dir`;
    start the loggers with that config."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_image(inputs.content, output_dir / "content.png")
    for i, style in enumerate(inputs.styles):
        save_image(style, output_dir / ("style.png" if len(inputs.styles) == 1 else f"style_{i}.png"))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return loggers


def scale_record(module: StyleTransferModule, loggers: list) -> dict[str, Any]:
    """One scale's size, steps and losses; its final losses also go to the loggers as `scale/<size>px/<term>`."""
    record = {"image_size": list(module.image.shape[-2:]), "steps": module.scale_steps,
              "loss_evaluations": module.loss_evaluations,
              "initial_losses": module.initial_losses, "final_losses": module.evaluate()}
    size = max(record["image_size"])
    for logger in loggers:
        logger.log_metrics({f"scale/{size}px/{k}": v for k, v in record["final_losses"].items()}, step=module.run_step)
    return record


def save_outcome(module: StyleTransferModule | None, done: list[dict[str, Any]], loggers: list, status: str,
                 wall_time: float, seed: int, output_dir: Path, error: str | None = None) -> dict[str, Any]:
    """Save the image as it stands (finished or not), its checkpoint and results.json; end the loggers.

    `done` holds the records of the scales before `module`'s (none for a single scale)."""
    scales = list(done)
    try:
        if module is not None and module.initial_losses:  # it started: its image is the run's latest
            scales.append(scale_record(module, loggers))
            save_image(module.output_image(), output_dir / "result.png")
            module.save_checkpoint()
            module.log_image("result", module.run_step)
            for logger in loggers:
                logger.log_metrics({f"final/{k}": v for k, v in scales[-1]["final_losses"].items()},
                                   step=module.run_step)
    finally:
        finish_loggers(loggers, "success" if status == "completed" else "failed")
    results = results_record(status, scales, wall_time, seed, module, error)
    write_results(output_dir / "results.json", results)
    return results


def results_record(status: str, scales: list[dict[str, Any]], wall_time: float, seed: int,
                   module: StyleTransferModule | None, error: str | None) -> dict[str, Any]:
    """The content of results.json, from the records of the scales the run finished."""
    return {
        "status": status,
        "task": "nst",
        "steps": sum(r["steps"] for r in scales),
        "loss_evaluations": sum(r["loss_evaluations"] for r in scales),
        "wall_time_s": round(wall_time, 3),
        "seed": seed,
        "image_size": scales[-1]["image_size"] if scales else None,
        "device": str(module.device) if module is not None else None,
        "initial_losses": scales[0]["initial_losses"] if scales else {},
        "final_losses": scales[-1]["final_losses"] if scales else {},
        "scales": scales,
        "result": "result.png" if scales else None,
        **({"error": error} if error else {}),
    }


def summary(results: dict[str, Any]) -> str:
    """One line for the console at the end of a run; a batched sweep's adds one line per element."""
    if "runs" in results:
        return (f"a batched sweep of {len(results['runs'])} runs (compare them: python scripts/compare.py "
                f"{results['directory']})" + "".join(f"\n  {name}: {summary(r)}"
                                                     for name, r in zip(results["names"], results["runs"])))
    return (f"total loss {results['initial_losses']['total']:.4g} -> {results['final_losses']['total']:.4g}  "
            f"({results['steps']} steps, {results['loss_evaluations']} loss evaluations, {results['wall_time_s']:.1f} s)")


def score(results: dict[str, Any]) -> float:
    """What a sweeper minimises: the final total loss (a batched sweep's best element's)."""
    if "runs" in results:
        return min(score(r) for r in results["runs"])
    return results["final_losses"]["total"]
