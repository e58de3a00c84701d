"""GAN training as a task: build the networks, data and metric from the config, train, save the outcome.

`run(cfg)` does the work and returns the results it wrote to results.json; `summary` and `score`
report them (see `nst_research.app`).
"""

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nst_research.data.base import ImageDataModule
from nst_research.errors import UserInputError
from nst_research.gan.losses import get_loss
from nst_research.gan.metric import frechet_distance, frechet_metric, load_classifier
from nst_research.gan.module import METRIC_KEY, GANModule
from nst_research.tracking.loggers import finish_loggers, instantiate_loggers
from nst_research.tracking.results import write_results


def build(node: DictConfig) -> Any:
    """`instantiate`, with a missing value or the constructor's own ValueError as a UserInputError."""
    try:
        return instantiate(node)
    except MissingMandatoryValue as error:
        raise UserInputError(f"{error.full_key} has no value; set it, e.g. {error.full_key}=...") from None
    except InstantiationException as error:  # Hydra wraps the constructor's own error
        if isinstance(error.__cause__, ValueError):
            raise UserInputError(str(error.__cause__)) from None
        raise


def check_run_settings(cfg: DictConfig) -> None:
    for key, value in (("sample_every", cfg.sample_every), ("grid_size", cfg.grid_size),
                       ("gan.d_steps", cfg.gan.d_steps), ("metric.samples", cfg.metric.samples)):
        if not isinstance(value, int) or value < 1:
            raise UserInputError(f"{key}={value} must be an integer >= 1")
    if cfg.gan.noise not in ("uniform", "normal"):
        raise UserInputError(f"gan.noise={cfg.gan.noise}: choose uniform or normal")
    if cfg.gan.gradient_clip_algorithm not in ("norm", "value"):
        raise UserInputError(f"gan.gradient_clip_algorithm={cfg.gan.gradient_clip_algorithm}: choose norm or value")


def check_compatible(generator: torch.nn.Module, datamodule: ImageDataModule, gan: str) -> None:
    """The data's images must have the generator's shape."""
    made = (generator.channels, generator.image_size)
    given = (datamodule.channels, datamodule.image_size)
    if made != given:
        raise UserInputError(f"gan={gan} makes {made[0]}x{made[1]}x{made[1]} images but data={datamodule.name} "
                             f"gives {given[0]}x{given[1]}x{given[1]}; choose a matching gan= (gan=dcgan64 takes "
                             "the data's channels at 32 or 64 px) or set data.channels")


def make_trainer(cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """The Lightning Trainer of `cfg.trainer`; a device this machine lacks (trainer=gpu or ddp without a GPU)
    is a UserInputError."""
    try:
        return instantiate(cfg.trainer, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, MisconfigurationException):
            raise UserInputError(f"trainer: {error.__cause__}; choose a trainer this machine supports, e.g. "
                                 "trainer=cpu (or trainer=ddp_cpu for several processes)") from None
        raise


def check_launch(cfg: DictConfig, trainer: pl.Trainer) -> None:
    """Lightning's DDP starts its other processes by running the same command again: in a multirun
    each of them would run the whole sweep. SLURM (or torchrun) starting the processes is fine."""
    if (cfg.get("sweep") and trainer.world_size > 1
            and not trainer.strategy.cluster_environment.creates_processes_externally):
        raise UserInputError(f"a {trainer.world_size}-process trainer (strategy=ddp) cannot run inside a multirun (-m), "
                             "because Lightning starts its other processes by re-running the command; run each DDP "
                             "training as its own command, or on SLURM with hydra/launcher=slurm "
                             "hydra.launcher.tasks_per_node=<devices>")


def resume_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest Lightning checkpoint of a GAN run (the one written on interruption, else last.ckpt)
    and its results.json, to continue the run."""
    candidates = [p for p in (run_dir / "checkpoints" / "interrupted.ckpt", run_dir / "checkpoints" / "last.ckpt")
                  if p.is_file()]
    if not candidates:
        raise UserInputError(f"resume={run_dir}: no checkpoints/last.ckpt there; give the directory of a GAN run")
    results = run_dir / "results.json"
    return max(candidates, key=lambda p: p.stat().st_mtime), json.loads(results.read_text()) if results.is_file() else {}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one GAN; write samples.png, samples/, checkpoints/, config.yaml and results.json.
    With `resume` (a run directory), continue from its newest checkpoint up to `trainer.max_epochs`."""
    check_run_settings(cfg)
    ckpt_path, previous = resume_checkpoint(Path(cfg.resume)) if cfg.get("resume") else (None, {})
    loss = get_loss(cfg.gan.loss)
    output_dir = Path(cfg.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    generator, discriminator = build(cfg.gan.generator), build(cfg.gan.discriminator)
    datamodule: ImageDataModule = build(cfg.data)
    check_compatible(generator, datamodule, cfg.gan.name)
    datamodule.setup("fit")  # bad data (offline, empty folder) fails here, before anything is written
    classifier, accuracy = load_classifier(cfg.metric.cache_dir)
    reference, other_half = datamodule.reference_halves()

    module = GANModule(generator, discriminator, loss, instantiate(cfg.gan.optimizer.generator),
                       instantiate(cfg.gan.optimizer.discriminator), noise=cfg.gan.noise, d_steps=cfg.gan.d_steps,
                       gradient_clip_val=cfg.gan.gradient_clip_val,
                       gradient_clip_algorithm=cfg.gan.gradient_clip_algorithm, sample_every=cfg.sample_every,
                       grid_size=cfg.grid_size, output_dir=output_dir, metric=frechet_metric(classifier),
                       noise_seed=cfg.seed)
    module.set_reference(reference)
    checkpoint = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best", monitor=METRIC_KEY,
                                 mode="min", save_last=True, save_top_k=1)
    on_interrupt = OnExceptionCheckpoint(dirpath=output_dir / "checkpoints", filename="interrupted")
    callbacks = [checkpoint, on_interrupt] if cfg.trainer.get("enable_checkpointing", True) else []
    extra_callbacks = [build(node) for node in (cfg.get("callbacks") or {}).values()]
    # The trainer before any file or logger: it knows this process's rank under DDP.
    trainer = make_trainer(cfg, logger=False, default_root_dir=output_dir, callbacks=callbacks + extra_callbacks)
    check_launch(cfg, trainer)

    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(resolved)
    trainer.loggers = loggers
    metric = {"initial": None, "final": None, "best": None,
              "floor": frechet_distance(classifier, reference, other_half),
              "samples": cfg.metric.samples, "classifier_accuracy": round(accuracy, 4)}
    start = time.perf_counter() - previous.get("wall_time_s", 0.0)
    status = "failed"
    try:
        if ckpt_path is None:
            metric["initial"] = trainer.validate(module, datamodule=datamodule, verbose=False)[0][METRIC_KEY]
            module.save_samples(output_dir / "samples" / "step_000000.png")
        else:
            metric["initial"] = previous.get("frechet_distance", {}).get("initial")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metric["final"] = trainer.validate(module, datamodule=datamodule, verbose=False)[0][METRIC_KEY]
        status = "completed"
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    finally:
        results = save_outcome(module, trainer, loggers, status, time.perf_counter() - start, cfg, datamodule.name,
                               metric, checkpoint if callbacks else None, output_dir)
    return results


def save_outcome(module: GANModule, trainer: pl.Trainer, loggers: list, status: str, wall_time: float,
                 cfg: DictConfig, data: str, metric: dict[str, Any], checkpoint: ModelCheckpoint | None,
                 output_dir: Path) -> dict[str, Any]:
    """Save the final grid (finished or not) and results.json; end the loggers."""
    try:
        module.save_samples(output_dir / "samples.png")
    finally:
        finish_loggers(loggers, "success" if status == "completed" else "failed")
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metric["best"] = checkpoint.best_model_score.item()
    checkpoints = {} if checkpoint is None else {
        name: str(Path(path).relative_to(output_dir)) for name, path in
        (("last", checkpoint.last_model_path), ("best", checkpoint.best_model_path)) if path}
    results = {
        "status": status,
        "task": "gan",
        "gan": cfg.gan.name,
        "loss": cfg.gan.loss,
        "data": data,
        "epochs": trainer.current_epoch,
        "generator_steps": module.generator_steps,
        "discriminator_steps": module.discriminator_steps,
        "wall_time_s": round(wall_time, 3),
        "seed": cfg.seed,
        "device": str(module.device),
        "processes": trainer.world_size,
        "final_losses": module.final_losses(),
        "frechet_distance": metric,
        "checkpoints": checkpoints,
        "result": "samples.png",
    }
    if trainer.is_global_zero:
        write_results(output_dir / "results.json", results)
    return results


def summary(results: dict[str, Any]) -> str:
    """One line for the console at the end of a run."""
    fd = results["frechet_distance"]
    return (f"Frechet distance {fd['initial']:.4g} -> {fd['final']:.4g} (real-vs-real floor {fd['floor']:.4g})  "
            f"({results['generator_steps']} generator steps, {results['epochs']} epochs, "
            f"{results['wall_time_s']:.1f} s)")


def score(results: dict[str, Any]) -> float:
    """What a sweeper minimises: the final Frechet distance (infinite when there is none)."""
    final = results["frechet_distance"]["final"]
    return math.inf if final is None else final
