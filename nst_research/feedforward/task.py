"""Feed-forward style transfer as a task (`task=feedforward`): the entry that reads the config, builds the
parts and trains a stylising network (Johnson et al. 2016) for one style.

`run(cfg)` checks every input, builds the photos, the objective (style transfer's, from its `_target_`
terms), the network's module and the trainer, and trains inside a `RunLifecycle` (run directory, loggers,
status, results.json). Checkpoints: `checkpoints/best.ckpt` (the lowest `val/total` on the held-out images),
`last.ckpt` (the latest validation, which also follows the last step) and `interrupted.ckpt` (on Ctrl-C or a
crash); `resume=<run dir>` continues from the newest. Below this module, code receives values and objects.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from omegaconf import DictConfig, OmegaConf

from nst_research.checkpoint_files import newest_readable
from nst_research.errors import UserInputError
from nst_research.feedforward.data import PhotoDataModule
from nst_research.feedforward.module import FeedForwardModule
from nst_research.gan.task import check_launch
from nst_research.judge.judge import FeatureJudge
from nst_research.judge.runs import RunJudge, metrics
from nst_research.nst.images import MIN_IMAGE_SIZE, load_image
from nst_research.nst.results import eval_headline, without_empty_eval
from nst_research.nst.styles import blend_weights, style_list
from nst_research.nst.task import build_judge, build_objective
from nst_research.parts import build, check_training_precision, make_trainer
from nst_research.tracking.checkpoints import AtomicCheckpointIO, RunModelCheckpoint
from nst_research.tracking.lifecycle import RunLifecycle
from nst_research.tracking.progress import StepProgressBar
from nst_research.tracking.results import Artifact, RunResults

MONITOR = "val/total"
CHECKPOINTS = ("best", "last", "interrupted")


@dataclass(kw_only=True)
class FeedForwardResults(RunResults):
    """results.json of a feed-forward training: steps, the held-out images' losses before and after (every term
    by name, as style transfer's results.json), the best validation total, the checkpoints written, and `eval`,
    the judge's settings and numbers for the final network (each the mean over the held-out images; no `eval`
    key when the run is not judged)."""

    task: str = "feedforward"
    style: list[str] = field(default_factory=list)
    steps: int = 0
    image_size: int | None = None
    device: str | None = None
    processes: int = 1
    initial_losses: dict[str, float] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    best_val_total: float | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    eval: dict[str, Any] | None = None

    def headline(self) -> dict[str, Any]:
        return {**{f"final/{term}": self.final_losses.get(term) for term in ("total", "content", "style", "tv")},
                **eval_headline(self.eval), "best_val_total": self.best_val_total, "steps": self.steps}

    def to_dict(self) -> dict[str, Any]:
        return without_empty_eval(super().to_dict())

    def artifacts(self) -> list[Artifact]:
        """The result (the last sample grid, results.json, config.yaml) and the checkpoints as a `model` artifact:
        the last one as `latest`, the best by the held-out loss as `best`."""
        models = [Artifact("model", [self.checkpoints[name]], [alias])
                  for name, alias in (("last", "latest"), ("best", "best")) if name in self.checkpoints]
        return super().artifacts() + models


def check_run_settings(cfg: DictConfig) -> None:
    """The task's own numbers; the photos, network, terms and trainer check theirs when built."""
    for key, value, minimum in (("image_size", cfg.image_size, MIN_IMAGE_SIZE), ("sample_every", cfg.sample_every, 1),
                                ("trainer.val_check_interval", cfg.trainer.val_check_interval, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UserInputError(f"{key}={value} must be an integer >= {minimum}")
    steps, epochs = cfg.trainer.max_steps, cfg.trainer.max_epochs
    if not isinstance(steps, int) or not (steps >= 1 or steps == -1):
        raise UserInputError(f"trainer.max_steps={steps} must be an integer >= 1, or -1 with trainer.max_epochs")
    if steps == -1 and not (isinstance(epochs, int) and epochs >= 1):
        raise UserInputError(f"trainer.max_steps=-1 trains by epochs, but trainer.max_epochs={epochs}; "
                             "set trainer.max_epochs >= 1 or trainer.max_steps >= 1")
    if cfg.style_scale is None or not cfg.style_scale > 0:
        raise UserInputError(f"style_scale={cfg.style_scale} must be a number > 0")


def load_styles(cfg: DictConfig) -> tuple[list[str], list[torch.Tensor], list[float]]:
    """The style images (long side `style_scale * image_size`, as task=nst loads them) and their blend weights."""
    names = style_list(OmegaConf.to_object(cfg.style) if OmegaConf.is_config(cfg.style) else cfg.style)
    size = round(cfg.image_size * cfg.style_scale)
    if size < MIN_IMAGE_SIZE:
        raise UserInputError(f"style_scale={cfg.style_scale} gives style images of {size} px; "
                             f"use a style_scale that keeps them >= {MIN_IMAGE_SIZE} px")
    images = [load_image(name, size, cfg.max_megapixels) for name in names]
    blend = OmegaConf.to_object(cfg.style_blend) if OmegaConf.is_config(cfg.style_blend) else cfg.style_blend
    return names, images, blend_weights(len(images), blend)


def resume_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest Lightning checkpoint of a feed-forward run that reads (the one written on interruption, else
    last.ckpt), and its contents."""
    candidates = [run_dir / "checkpoints" / f"{name}.ckpt" for name in ("interrupted", "last")]
    candidates = [path for path in candidates if path.is_file()]
    if not candidates:
        raise UserInputError(f"resume={run_dir}: no checkpoints/last.ckpt there; give the directory of a "
                             "feed-forward run")
    return newest_readable(candidates)


def check_more_steps(checkpoint: dict[str, Any], max_steps: int) -> None:
    """A resumed run must have steps left to take."""
    done = checkpoint.get("global_step", 0)
    if max_steps != -1 and done >= max_steps:
        raise UserInputError(f"resume: that run already has {done} steps; ask for more, e.g. "
                             f"trainer.max_steps={2 * done}")


def check_optimizer(module: FeedForwardModule) -> None:
    """The optimizer accepts its settings (a negative learning rate is refused here, not in the first step)."""
    try:
        module.configure_optimizers()
    except ValueError as error:
        raise UserInputError(f"optimizer: {error}; fix the optimizer.* settings") from None


def build_parts(cfg: DictConfig, output_dir: Path | None = None, judge: FeatureJudge | None = None
                ) -> tuple[PhotoDataModule, FeedForwardModule, list[str]]:
    """The photos (set up), the module (network, objective, optimizer, style images, held-out images, the judge of
    their stylisations) and the style names, every input checked; nothing is written (the module writes its grids
    to `output_dir` later)."""
    names, styles, blend = load_styles(cfg)
    photos: PhotoDataModule = build(cfg.photos)
    photos.setup("fit")  # bad data (an empty folder, a missing held-out image) fails here, before anything is written
    objective = build_objective(cfg)
    held_out = photos.validation_images()
    for image in (*styles, held_out, torch.zeros(1, 3, photos.image_size, photos.image_size)):
        objective.features.check_size(image)
    judging = None
    if judge is not None:  # each held-out photo is a content; the styles as given, at the photos' size
        originals = [load_image(name, max(held_out.shape[-2:]), cfg.max_megapixels) for name in names]
        judging = RunJudge(judge, lambda i: (held_out[i:i + 1], originals, blend, None))
    module: FeedForwardModule = build(cfg.module)(
        network=OmegaConf.to_container(cfg.network, resolve=True), objective=objective,
        optimizer=build(cfg.optimizer), styles=styles, blend=blend, samples=held_out, output_dir=output_dir,
        judging=judging)
    check_optimizer(module)
    return photos, module, names


def run(cfg: DictConfig) -> FeedForwardResults:
    """Train one stylising network; write samples/, checkpoints/, csv/, config.yaml and results.json. Every
    input is checked before anything is written. With `resume` (a run directory), continue from its newest
    checkpoint up to `trainer.max_steps` (or `trainer.max_epochs`)."""
    check_run_settings(cfg)
    judge = build_judge(cfg)
    ckpt_path = None
    if cfg.get("resume"):
        ckpt_path, checkpoint = resume_checkpoint(Path(cfg.resume))
        check_more_steps(checkpoint, cfg.trainer.max_steps)
    output_dir = Path(cfg.output_dir)
    folder = output_dir / "checkpoints"
    options = {"dirpath": folder, "enable_version_counter": False}  # each name is one file, overwritten
    best = RunModelCheckpoint(filename="best", monitor=MONITOR, mode="min", save_top_k=1, **options)
    last = RunModelCheckpoint(filename="last", **options)  # no monitor: the latest validation's state
    on_interrupt = OnExceptionCheckpoint(dirpath=folder, filename="interrupted")
    callbacks = [best, last, on_interrupt] if cfg.trainer.get("enable_checkpointing", True) else []
    extra_callbacks = [build(node) for node in (cfg.get("callbacks") or {}).values()]
    if cfg.trainer.get("enable_progress_bar", True):
        extra_callbacks.append(StepProgressBar())  # the bar counts steps: the budget is in steps
    # The trainer first: a device this machine lacks is refused at once, and under DDP it knows this
    # process's rank before any file or logger.
    trainer = make_trainer(cfg.trainer, logger=False, default_root_dir=output_dir,
                           callbacks=callbacks + extra_callbacks, plugins=[AtomicCheckpointIO()])
    check_launch(cfg, trainer)
    check_training_precision(trainer)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    photos, module, names = build_parts(cfg, output_dir, judge)
    describe = {"style": names, "image_size": photos.image_size, "seed": cfg.seed}

    with RunLifecycle(output_dir, OmegaConf.to_container(cfg, resolve=True), cfg.get("logger"), task="feedforward",
                      primary=trainer.is_global_zero) as run:
        run.on_finish(lambda status, error: save_outcome(module, trainer, best if callbacks else None, status, error,
                                                         output_dir, describe))
        trainer.loggers = run.loggers
        trainer.fit(module, datamodule=photos, ckpt_path=ckpt_path)
    return run.results


def save_outcome(module: FeedForwardModule, trainer: pl.Trainer, best: RunModelCheckpoint | None, status: str,
                 error: str | None, output_dir: Path, describe: dict[str, Any]) -> FeedForwardResults:
    """Score and judge the network as it stands (finished or not) on the held-out images and save its grid; the
    results."""
    started = bool(module.initial_losses)
    if started and module.last_sample_step != module.global_step:
        module.save_samples()
    result = None if module.last_sample_step is None else f"samples/step_{module.last_sample_step:06d}.png"
    checkpoints = {name: f"checkpoints/{name}.ckpt" for name in CHECKPOINTS
                   if (output_dir / "checkpoints" / f"{name}.ckpt").is_file()}
    best_score = None if best is None or best.best_model_score is None else best.best_model_score.item()
    judged = module.judged() if started else None
    if judged is not None:  # as every judged run logs its result's numbers
        for logger in trainer.loggers:
            logger.log_metrics(metrics(judged), step=trainer.global_step)
    return FeedForwardResults(status=status, error=error, result=result, steps=trainer.global_step,
                              device=str(module.device), processes=trainer.world_size,
                              initial_losses=module.initial_losses, final_losses=module.evaluate() if started else {},
                              best_val_total=best_score, checkpoints=checkpoints,
                              eval=None if judged is None else module.judging.block(judged), **describe)


def summary(results: FeedForwardResults) -> str:
    """One line for the console at the end of a run."""
    initial, final = results.initial_losses.get("total"), results.final_losses.get("total")
    losses = f"held-out total loss {initial:.4g} -> {final:.4g}  " if None not in (initial, final) else ""
    return f"{losses}({results.steps} steps, {results.wall_time_s:.1f} s); stylise with scripts/stylize.py"


def score(results: FeedForwardResults) -> float:
    """What a sweeper minimises: the held-out images' final total loss."""
    return results.final_losses.get("total", float("inf"))
