"""GAN training as a task (`task=gan`): the entry that reads the config, builds the parts, trains.

`run(cfg)` builds the networks, data, metric and trainer from the config, checks them before
anything is written, and trains inside a `RunLifecycle` (run directory, loggers, status,
results.json); `summary` and `score` report the results (see `nst_research.app`).
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from omegaconf import DictConfig, OmegaConf

from nst_research.checkpoint_files import newest_readable
from nst_research.data.base import ImageDataModule
from nst_research.errors import UserInputError
from nst_research.gan.losses import GANLoss
from nst_research.gan.metric import SampleMetrics, load_classifier
from nst_research.gan.module import METRIC_KEY, GANModule
from nst_research.parts import build, make_training_trainer
from nst_research.tracking.checkpoints import AtomicCheckpointIO, RunModelCheckpoint
from nst_research.tracking.lifecycle import RunLifecycle
from nst_research.tracking.results import Artifact, RunResults

KNN_METRICS = ("precision", "recall", "density", "coverage")


@dataclass(kw_only=True)
class GANResults(RunResults):
    """results.json of a GAN training: steps, the last training losses, the Frechet distance
    (`initial`, `final`, `best`, the real-vs-real `floor`), precision, recall, density and coverage
    (`sample_metrics`: `initial`, `final` and `real_vs_real`, with their `k`; conditional runs add the
    classifier's `class_accuracy` on samples against the class asked for, overall and per class as
    `class_accuracy/<class>`) and the checkpoints written."""

    task: str = "gan"
    gan: str = ""
    loss: str = ""
    data: str = ""
    epochs: int = 0
    generator_steps: int = 0
    discriminator_steps: int = 0
    device: str | None = None
    precision: dict[str, str] | None = None  # Lightning's trainer.precision that ran, and why (auto's reason)
    processes: int = 1
    conditional: str | None = None  # the discriminator's class head (projection, acgan) of a conditional GAN
    final_losses: dict[str, float] = field(default_factory=dict)
    frechet_distance: dict[str, Any] = field(default_factory=dict)
    sample_metrics: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)

    def headline(self) -> dict[str, Any]:
        final = self.sample_metrics.get("final") or {}
        return {**{f"frechet_distance/{k}": self.frechet_distance.get(k) for k in ("final", "best", "floor")},
                **{name: final.get(name) for name in KNN_METRICS}, "generator_steps": self.generator_steps,
                **({"class_accuracy": final["class_accuracy"]} if "class_accuracy" in final else {})}

    def artifacts(self) -> list[Artifact]:
        """The result (samples.png, results.json, config.yaml) and the checkpoints as a `model` artifact:
        the last one as `latest`, the best by the Frechet distance as `best`."""
        models = [Artifact("model", [self.checkpoints[name]], [alias])
                  for name, alias in (("last", "latest"), ("best", "best")) if name in self.checkpoints]
        return super().artifacts() + models


def check_run_settings(cfg: DictConfig) -> None:
    for key, value in (("sample_every", cfg.sample_every), ("grid_size", cfg.grid_size),
                       ("gan.d_steps", cfg.gan.d_steps), ("metric.samples", cfg.metric.samples),
                       ("metric.k", cfg.metric.k)):
        if not isinstance(value, int) or value < 1:
            raise UserInputError(f"{key}={value} must be an integer >= 1")
    if cfg.metric.samples <= cfg.metric.k:
        raise UserInputError(f"metric.samples={cfg.metric.samples} must be above metric.k={cfg.metric.k}: "
                             "each sample's k nearest neighbours are among the others")
    if cfg.gan.noise not in ("uniform", "normal"):
        raise UserInputError(f"gan.noise={cfg.gan.noise}: choose uniform or normal")
    if cfg.gan.gradient_clip_algorithm not in ("norm", "value"):
        raise UserInputError(f"gan.gradient_clip_algorithm={cfg.gan.gradient_clip_algorithm}: choose norm or value")
    if cfg.gan.generator is None or cfg.gan.discriminator is None:
        raise UserInputError("gan.generator or gan.discriminator is not set; choose a gan= option that sets both "
                             "(python scripts/run.py --help lists them)")


def pick(gan: DictConfig, key: str, choices: str, what: str) -> Any:
    """The part that `gan.<key>` names among the `gan.<choices>` nodes, built."""
    name = gan[key]
    if name not in gan[choices]:
        raise UserInputError(f"gan.{key}={name} is not {what}; choose one of: {', '.join(gan[choices])}")
    return build(gan[choices][name])


def make_loss(gan: DictConfig) -> GANLoss:
    """The loss that `gan.loss` names among the `gan.losses` nodes (conf/gan/loss/)."""
    return pick(gan, "loss", "losses", "a GAN loss")


def make_augment(gan: DictConfig) -> torch.nn.Module | None:
    """The augmentation that `gan.augment` names among the `gan.augments` nodes (conf/gan/augment/), or None."""
    return None if gan.augment is None else pick(gan, "augment", "augments", "an augmentation")


def check_compatible(generator: torch.nn.Module, datamodule: ImageDataModule, gan: str) -> None:
    """The data's images must have the generator's shape."""
    made = (generator.channels, generator.image_size)
    given = (datamodule.channels, datamodule.image_size)
    if made != given:
        raise UserInputError(f"gan={gan} makes {made[0]}x{made[1]}x{made[1]} images but data={datamodule.name} "
                             f"gives {given[0]}x{given[1]}x{given[1]}; choose a matching gan= (gan=dcgan64 takes "
                             "the data's channels at 32 or 64 px) or set data.channels")


def conditional_classes(gan: DictConfig, datamodule: ImageDataModule) -> int | None:
    """The number of classes a conditional GAN is given (the data's, which it reads to know), or None."""
    if not gan.conditional:
        return None
    datamodule.setup("fit")
    if datamodule.num_classes is None:
        raise UserInputError(f"gan.conditional=true needs labelled data, but data={datamodule.name} has no classes; "
                             "use data=mnist5k, mnist, fashion_mnist, cifar10, or an image folder with one subfolder "
                             "per class")
    return datamodule.num_classes


def check_launch(cfg: DictConfig, trainer: pl.Trainer) -> None:
    """Lightning's DDP starts its other processes by running the same command again: in a multirun
    each of them would run the whole sweep. SLURM (or torchrun) starting the processes is fine."""
    if (cfg.get("sweep") and trainer.world_size > 1
            and not trainer.strategy.cluster_environment.creates_processes_externally):
        raise UserInputError(f"a {trainer.world_size}-process trainer (strategy=ddp) cannot run inside a multirun "
                             "(-m), because Lightning starts its other processes by re-running the command; run each "
                             "DDP training as its own command, or on SLURM with hydra/launcher=slurm "
                             "hydra.launcher.tasks_per_node=<devices>")


def resume_checkpoint(run_dir: Path) -> Path:
    """The newest Lightning checkpoint of a GAN run that reads (the one written on interruption, else last.ckpt)."""
    candidates = [p for p in (run_dir / "checkpoints" / "interrupted.ckpt", run_dir / "checkpoints" / "last.ckpt")
                  if p.is_file()]
    if not candidates:
        raise UserInputError(f"resume={run_dir}: no checkpoints/last.ckpt there; give the directory of a GAN run")
    return newest_readable(candidates)[0]


def run(cfg: DictConfig) -> GANResults:
    """Train one GAN; write samples.png, samples/, checkpoints/, config.yaml and results.json.
    With `resume` (a run directory), continue from its newest checkpoint up to `trainer.max_epochs`."""
    check_run_settings(cfg)
    ckpt_path = resume_checkpoint(Path(cfg.resume)) if cfg.get("resume") else None
    loss, augment = make_loss(cfg.gan), make_augment(cfg.gan)
    output_dir = Path(cfg.output_dir)
    # Two callbacks: Lightning's save_last writes last.ckpt only when the monitored metric improved.
    best, last = (RunModelCheckpoint(dirpath=output_dir / "checkpoints", filename=name, save_top_k=1,
                                     enable_version_counter=False, **monitor)
                  for name, monitor in (("best", {"monitor": METRIC_KEY, "mode": "min"}), ("last", {})))
    on_interrupt = OnExceptionCheckpoint(dirpath=output_dir / "checkpoints", filename="interrupted")
    callbacks = [best, last, on_interrupt] if cfg.trainer.get("enable_checkpointing", True) else []
    extra_callbacks = [build(node) for node in (cfg.get("callbacks") or {}).values()]
    # The trainer first: a device this machine lacks is refused at once, and under DDP it knows this
    # process's rank before any file or logger.
    trainer, precision = make_training_trainer(cfg.trainer, logger=False, default_root_dir=output_dir,
                                               callbacks=callbacks + extra_callbacks,
                                               plugins=[AtomicCheckpointIO()])
    check_launch(cfg, trainer)
    datamodule: ImageDataModule = build(cfg.data)
    classes = conditional_classes(cfg.gan, datamodule)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    generator_config = {**OmegaConf.to_container(cfg.gan.generator, resolve=True),
                        **({"num_classes": classes} if classes else {})}
    generator = build(generator_config)
    discriminator = build(cfg.gan.discriminator, **({"num_classes": classes,
                                                     "conditional_head": cfg.gan.conditional_head} if classes else {}))
    check_compatible(generator, datamodule, cfg.gan.name)
    datamodule.setup("fit")  # bad data (offline, empty folder) fails here, before anything is written
    classifier, accuracy = load_classifier(cfg.metric.cache_dir)
    reference, other_half = datamodule.reference_halves()

    scorer = SampleMetrics(classifier, k=cfg.metric.k)
    try:  # the module node is partial: its own checks (gan.ema_decay) run here
        module: GANModule = build(cfg.module)(generator, discriminator, loss, build(cfg.gan.optimizer.generator),
                                              build(cfg.gan.optimizer.discriminator), output_dir=output_dir,
                                              metric=scorer, augment=augment, generator_config=generator_config)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    module.set_reference(reference)
    real_vs_real = scorer.compare(reference, other_half)
    metric = {"initial": None, "final": None, "best": None, "floor": real_vs_real["frechet_distance"],
              "samples": cfg.metric.samples, "classifier_accuracy": round(accuracy, 4)}
    knn = {"initial": None, "final": None, "real_vs_real": {name: real_vs_real[name] for name in KNN_METRICS},
           "k": cfg.metric.k}
    describe = {"gan": cfg.gan.name, "loss": cfg.gan.loss, "data": datamodule.name, "seed": cfg.seed,
                "conditional": cfg.gan.conditional_head if classes else None, "precision": precision.record()}

    with RunLifecycle(output_dir, OmegaConf.to_container(cfg, resolve=True), cfg.get("logger"), task="gan",
                      primary=trainer.is_global_zero) as run:
        run.on_finish(lambda status, error: save_outcome(module, trainer, status, error, metric, knn,
                                                         (best, last) if callbacks else None, output_dir, describe))
        trainer.loggers = run.loggers
        if ckpt_path is None:
            metric["initial"], knn["initial"] = validate(trainer, module, datamodule)
            module.save_samples(output_dir / "samples" / "step_000000.png")
        else:
            metric["initial"] = run.previous.get("frechet_distance", {}).get("initial")
            knn["initial"] = run.previous.get("sample_metrics", {}).get("initial")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metric["final"], knn["final"] = validate(trainer, module, datamodule)
    return run.results


def validate(trainer: pl.Trainer, module: GANModule, datamodule: ImageDataModule) -> tuple[float, dict[str, float]]:
    """Score the generator now: its Frechet distance, and its precision, recall, density and coverage."""
    scores = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    return scores[METRIC_KEY], {name.removeprefix("val/"): value for name, value in scores.items()
                                if name.removeprefix("val/").split("/")[0] in (*KNN_METRICS, "class_accuracy")}


def save_outcome(module: GANModule, trainer: pl.Trainer, status: str, error: str | None, metric: dict[str, Any],
                 knn: dict[str, Any], checkpoints: tuple[RunModelCheckpoint, RunModelCheckpoint] | None,
                 output_dir: Path, describe: dict[str, Any]) -> GANResults:
    """Save the final grid (finished or not); the run's results. `checkpoints`: the best and last callbacks."""
    module.save_samples(output_dir / "samples.png")
    best, last = checkpoints or (None, None)
    if best is not None and best.best_model_score is not None:
        metric["best"] = best.best_model_score.item()
    written = {} if best is None else {name: str(Path(callback.best_model_path).relative_to(output_dir))
                                       for name, callback in (("last", last), ("best", best))
                                       if callback.best_model_path}
    return GANResults(status=status, error=error, result="samples.png", epochs=trainer.current_epoch,
                      generator_steps=module.generator_steps, discriminator_steps=module.discriminator_steps,
                      device=str(module.device), processes=trainer.world_size, final_losses=module.final_losses(),
                      frechet_distance=metric, sample_metrics=knn, checkpoints=written, **describe)


def summary(results: GANResults) -> str:
    """One line for the console at the end of a run."""
    fd = results.frechet_distance
    return (f"Frechet distance {fd['initial']:.4g} -> {fd['final']:.4g} (real-vs-real floor {fd['floor']:.4g})  "
            f"({results.generator_steps} generator steps, {results.epochs} epochs, {results.wall_time_s:.1f} s)")


def score(results: GANResults) -> float:
    """What a sweeper minimises: the final Frechet distance (infinite when there is none)."""
    final = results.frechet_distance["final"]
    return math.inf if final is None else final
