"""Style transfer as a task (`task=nst`): the entry that reads the config, builds the parts, runs them.

`run(cfg)` checks every input, builds the objective from its `_target_` terms, the optimizer and
the module, and optimises one scale after another inside a `RunLifecycle` (run directory, loggers,
status, results.json). Below this module, code receives values and objects, not the config. With
`batch_sweep=true` it runs a batched sweep instead (`nst_research.nst.batched`).
"""

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nst_research.checkpoint_files import read_checkpoint
from nst_research.errors import RunDiverged, UserInputError
from nst_research.judge.judge import FeatureJudge
from nst_research.judge.runs import RunJudge, metrics
from nst_research.nst import batched
from nst_research.nst.averaging import check_decay
from nst_research.nst.checks import BATCH_KEYS, check, check_layer_names
from nst_research.nst.images import save_image
from nst_research.nst.inputs import StyleTransferInputs, prepare_inputs
from nst_research.nst.module import StepBoundaryInterrupt, StyleTransferCheckpoint, StyleTransferModule
from nst_research.nst.multiscale import scale_sizes, scale_steps, upsample
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.results import BatchedResults, ScaleRecord, StyleTransferResults, scale_records
from nst_research.parts import build, make_trainer
from nst_research.precision import Precision
from nst_research.tracking.lifecycle import RunLifecycle
from nst_research.tracking.sweep import sweep_group, with_sweep_job

INPUT_KEYS = ("content", "style", "style_scale", "masks", "style_blend", "preserve_color", "init", "seed",
              "max_megapixels")


def build_objective(cfg: DictConfig) -> StyleTransferObjective:
    """The objective of `cfg.objective.terms`, over the feature network of `cfg.model` cut after the
    deepest layer any term reads. Layer names are checked first, so an unknown name is reported as such."""
    check_layer_names(cfg)
    terms = {name: build(node) for name, node in cfg.objective.terms.items() if node is not None}
    features = build(cfg.model, layers=StyleTransferObjective.layers(terms))
    return StyleTransferObjective(features, terms)


def precision_choice(cfg: DictConfig) -> Precision:
    """The precision that `precision=` and `channels_last=` ask for (a run saved before they existed: fp32)."""
    return Precision.choice(cfg.get("precision", 32), cfg.get("channels_last", False))


def compute_in(objective: StyleTransferObjective, precision: Precision, device: torch.device) -> None:
    """Make the objective compute in `precision` as it runs on `device`, and say which, and why, on the console
    unless fp32 was asked for as it is (`precision=32`)."""
    resolved = precision.resolve(device)
    objective.compute_in(resolved)
    if precision != Precision():
        print(f"precision: {resolved.describe()}")


def build_judge(cfg: DictConfig) -> FeatureJudge | None:
    """The run's judge (`judge=none`: None), built before the run is seeded or writes anything: a bad judge
    setting is refused like any other input, and building it leaves the run's random numbers as they were."""
    return None if cfg.get("judge") is None else build(cfg.judge)


def allow_tf32(allowed: bool) -> None:
    """TF32 matrix products and convolutions on NVIDIA GPUs (Ampere and later) for Adam and SGD; exact fp32
    for L-BFGS, whose curvature pairs are differences of gradients. Nothing changes on other devices."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def divergence_hint(step: int, lbfgs: bool, lr: float | None, weights: str) -> str:
    """The likely cause of a non-finite loss, and the override that usually fixes it."""
    if step <= 1:
        return ("the starting image's loss is already not finite: the loss weights overflow float32; "
                f"lower them ({weights})")
    if lbfgs:
        return "L-BFGS overshot: try optimizer.line_search_fn=strong_wolfe, smaller loss weights, or optimizer=adam"
    return f"the learning rate is likely too high: try a smaller optimizer.lr (it is {lr})"


def check_carry(lbfgs: bool, parameterization: type) -> None:
    """`multiscale.carry_optimizer_state` needs state shaped like the image: Adam's or SGD's, on a resizable
    parameterization."""
    if lbfgs:
        raise UserInputError("multiscale.carry_optimizer_state=true carries Adam's or SGD's state; L-BFGS's history "
                             "cannot be resized: use optimizer=adam, or drop the override")
    if not parameterization.resizable:
        raise UserInputError(f"multiscale.carry_optimizer_state=true: the {parameterization.__name__} "
                             "parameterization's state cannot be resized between scales; use parameterization=pixels "
                             "or laplacian, or drop the override")


def hint_for(cfg: DictConfig) -> Callable[[int], str]:
    """`divergence_hint` with this config's optimizer and weights."""
    weights = f"style_weight={cfg.style_weight}, content_weight={cfg.content_weight}"
    return partial(divergence_hint, lbfgs=cfg.optimizer._target_.endswith("LBFGS"), lr=cfg.optimizer.get("lr"),
                   weights=weights)


def load_resume(run_dir: Path) -> StyleTransferCheckpoint:
    """The checkpoint of an interrupted (or finished) run, to continue it."""
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise UserInputError(f"resume={run_dir}: no checkpoint.pt there; give the directory of a style-transfer run")
    return read_checkpoint(checkpoint)


def input_loader(cfg: DictConfig) -> Callable[[int], StyleTransferInputs]:
    """`prepare_inputs` with this config's images and options, for a given image size."""
    values = {key: OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key] for key in INPUT_KEYS}
    return lambda size: prepare_inputs(image_size=size, **values)


def run(cfg: DictConfig) -> StyleTransferResults | BatchedResults:
    """Run one style transfer, one scale after another; write result.png, intermediate/, checkpoint.pt,
    config.yaml and results.json. Every input is checked before anything is written. With `resume`
    (a run directory), continue that run from its checkpoint up to the requested steps."""
    check(cfg)
    check_decay(cfg.ema_decay)
    judge = build_judge(cfg)
    if cfg.get("batch_sweep"):
        return run_batched(cfg, judge)
    sizes = scale_sizes(cfg.image_size, cfg.multiscale.min_size, cfg.multiscale.factor)
    steps = scale_steps(sizes, cfg.iterations, cfg.multiscale.iterations)
    output_dir = Path(cfg.output_dir)
    checkpoint = load_resume(Path(cfg.resume)) if cfg.get("resume") else None
    first = checkpoint["scale"] if checkpoint else 0
    if checkpoint and (first >= len(sizes) or checkpoint["scale_steps"] >= steps[first]):
        raise UserInputError(f"resume={cfg.resume}: that run already has {checkpoint['run_step']} steps; "
                             "ask for more (e.g. iterations=...) with the same image_size and multiscale settings")
    precision = precision_choice(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    objective = build_objective(cfg)
    scales = [input_loader(cfg)(size) for size in sizes]
    for inputs in scales:
        for image in (inputs.content, *inputs.styles):
            objective.features.check_size(image)
    if checkpoint and checkpoint["image"].shape != scales[first].content.shape:
        raise UserInputError(f"resume={cfg.resume}: the saved image is {list(checkpoint['image'].shape[-2:])} px "
                             "but these settings give another size; keep image_size and multiscale as they were")
    optimizer = instantiate(cfg.optimizer)
    lbfgs = optimizer.func is torch.optim.LBFGS
    allow_tf32(not lbfgs)
    new_trainer = partial(make_trainer, cfg.trainer, logger=False, default_root_dir=output_dir)
    trainer = new_trainer()  # a trainer this machine cannot run is refused before anything is written
    compute_in(objective, precision, trainer.strategy.root_device)
    if cfg.compile:
        objective.compile()
    judging = None if judge is None else RunJudge(judge.to(trainer.strategy.root_device),
                                                  lambda k: scales[k].judged())  # a reference per scale
    make_module = instantiate(cfg.module)
    parameterization = make_module.keywords["parameterization"]
    parameterization(scales[first].init)  # its settings are refused before anything is written
    carry = bool(cfg.multiscale.carry_optimizer_state)
    if carry:
        check_carry(lbfgs, parameterization.func)

    with RunLifecycle(output_dir, OmegaConf.to_container(cfg, resolve=True), cfg.get("logger"), task="nst") as run:
        write_inputs(output_dir, scales[-1])
        done = scale_records(run.previous)[:first]  # the finished coarser scales
        module: StyleTransferModule | None = None
        run.on_finish(lambda status, error: save_outcome(module, done, run.loggers, status, cfg.seed, output_dir,
                                                         error, judging, objective.precision))
        try:
            for k in range(first, len(scales)):
                inputs = scales[k]
                if module is not None:  # carry the coarser result up to this scale
                    done.append(scale_record(module, run.loggers, judging))
                    save_image(module.output_image(),
                               output_dir / "intermediate" / f"scale_{max(module.image_size)}px.png")
                    trainer = new_trainer()
                resume = checkpoint if checkpoint and k == first else None
                carried = module.optimizers().optimizer.state_dict() if module is not None and carry else None
                if len(scales) > 1:
                    print(f"scale {k + 1}/{len(scales)}: {max(inputs.content.shape[-2:])} px, {steps[k]} steps")
                init = (resume["image"] if resume else inputs.init) if module is None else upsample(
                    module.current_image(), inputs.content)
                module = make_module(objective=objective, content=inputs.content, styles=inputs.styles,
                                     blend=inputs.blend, init=init, optimizer=optimizer,
                                     iterations=steps[k] - (resume["scale_steps"] if resume else 0),
                                     output_dir=output_dir, chroma=inputs.chroma, masks=inputs.masks,
                                     step_offset=sum(r.steps for r in done), scale=k, resume=resume,
                                     optimizer_state=carried)
                trainer.loggers = run.loggers
                with StepBoundaryInterrupt() as module.interrupts:
                    trainer.fit(module)
        except RunDiverged as diverged:
            raise RunDiverged(f"{diverged}; {hint_for(cfg)(diverged.step)}; the last finite image is in "
                              f"{output_dir}/result.png", diverged.step) from None
    return run.results


def write_inputs(output_dir: Path, inputs: StyleTransferInputs) -> None:
    """The content and style images as the network sees them (at the final scale)."""
    save_image(inputs.content, output_dir / "content.png")
    for i, style in enumerate(inputs.styles):
        save_image(style, output_dir / ("style.png" if len(inputs.styles) == 1 else f"style_{i}.png"))


def scale_record(module: StyleTransferModule, loggers: list, judging: RunJudge | None) -> ScaleRecord:
    """One scale's size, steps, losses and the judge's numbers for its end image; its final losses and those
    numbers also go to the loggers as `scale/<size>px/<term>` and `scale/<size>px/eval/<key>`."""
    scores = None if judging is None else judging.score(module.output_image(), module.scale)
    record = ScaleRecord(image_size=module.image_size, steps=module.scale_steps,
                         loss_evaluations=module.loss_evaluations, initial_losses=module.initial_losses,
                         final_losses=module.evaluate(), eval=scores)
    prefix = f"scale/{max(record.image_size)}px/"
    for logger in loggers:
        logger.log_metrics({f"{prefix}{k}": v for k, v in record.final_losses.items()}, step=module.run_step)
        if scores is not None:
            logger.log_metrics(metrics(scores, prefix), step=module.run_step)
    return record


def save_outcome(module: StyleTransferModule | None, done: list[ScaleRecord], loggers: list, status: str, seed: int,
                 output_dir: Path, error: str | None, judging: RunJudge | None,
                 precision: Precision) -> StyleTransferResults:
    """Save the image as it stands (finished or not) and its checkpoint; the run's results, judged when
    `judging` is given.

    `done` holds the records of the scales before `module`'s (none for a single scale)."""
    scales = list(done)
    if module is not None and module.initial_losses:  # it started: its image is the run's latest
        scales.append(scale_record(module, loggers, judging))
        save_image(module.output_image(), output_dir / "result.png")
        module.save_checkpoint()
        module.log_image("result", module.run_step, with_metrics=True)  # in the row of final/*
        final = {f"final/{k}": v for k, v in scales[-1].final_losses.items()}
        for logger in loggers:
            logger.log_metrics({**final, **metrics(scales[-1].eval or {})}, step=module.run_step)
    device = str(module.device) if module is not None else None
    return StyleTransferResults.of(status, scales, seed, device, error,
                                   judge=None if judging is None else judging.judge.settings(),
                                   precision=precision.record())


def element_configs(cfg: DictConfig, values: dict[str, list[Any]]) -> list[batched.Element]:
    """One scalar config per element of a batched sweep, writing into `<run dir>/<b>`, recorded and named
    (in W&B) as a sweep job by the values that vary (`style_weight=10000.0`)."""
    output_dir = Path(cfg.output_dir)
    listed = [key for key in BATCH_KEYS if isinstance(cfg[key], ListConfig)]
    varying = [key for key in listed if len(cfg[key]) > 1]
    elements = []
    for b in range(len(values["seed"])):
        element = OmegaConf.merge(cfg, {**{key: values[key][b] for key in BATCH_KEYS},
                                        "batch_sweep": False, "output_dir": str(output_dir / str(b))})
        overrides = [f"{key}={values[key][b]}" for key in listed]
        name = ",".join(f"{key}={values[key][b]}" for key in varying) or f"job {b}"
        with_sweep_job(element, {"dir": str(output_dir), "group": sweep_group(output_dir), "job": b, "name": name,
                                 "overrides": overrides, "differing": [f"{key}={values[key][b]}" for key in varying]})
        if "wandb" in (element.get("logger") or {}):
            with open_dict(element):
                element.logger.wandb.reinit = "create_new"  # the batch's W&B runs are open at the same time
        elements.append(batched.Element(name=name, output_dir=Path(element.output_dir), overrides=overrides,
                                        config=OmegaConf.to_container(element, resolve=True),
                                        loggers=element.get("logger"), seed=element.seed,
                                        hint=hint_for(element)))
    return elements


def run_batched(cfg: DictConfig, judge: FeatureJudge | None) -> BatchedResults:
    """A batched sweep: every value of the listed keys optimised as one batch; each element a run of its own."""
    values = batched.batch_values({key: OmegaConf.to_object(cfg[key]) if isinstance(cfg[key], ListConfig)
                                   else cfg[key] for key in BATCH_KEYS})
    batched.check_batchable(cfg.optimizer._target_, sweep=bool(cfg.get("sweep")),
                            random_weights=cfg.model.get("weights") == "random", seeds=values["seed"],
                            options={"multiscale.min_size": cfg.multiscale.min_size, "resume": cfg.get("resume"),
                                     "compile": cfg.get("compile")})
    precision = precision_choice(cfg)
    elements = element_configs(cfg, values)
    pl.seed_everything(values["seed"][0], workers=True, verbose=False)
    inputs = [input_loader(OmegaConf.merge(cfg, {"seed": seed}))(cfg.image_size) for seed in values["seed"]]
    objective = build_objective(OmegaConf.merge(cfg, {key: values[key] for key in batched.WEIGHT_KEYS}))
    for image in (inputs[0].content, *inputs[0].styles):
        objective.features.check_size(image)
    optimizer = instantiate(cfg.optimizer)
    allow_tf32(True)
    trainer = make_trainer(cfg.trainer, logger=False, default_root_dir=cfg.output_dir)
    compute_in(objective, precision, trainer.strategy.root_device)
    module_options = instantiate(cfg.module).keywords  # save_every, ema_decay
    judging = None if judge is None else RunJudge(judge.to(trainer.strategy.root_device),
                                                  lambda key: inputs[0].judged())  # the elements share their inputs
    return batched.run(elements, inputs, objective, optimizer, trainer, iterations=cfg.iterations,
                       output_dir=Path(cfg.output_dir), judging=judging, **module_options)


def summary(results: StyleTransferResults | BatchedResults) -> str:
    """One line for the console at the end of a run; a batched sweep's adds one line per element."""
    if isinstance(results, BatchedResults):
        return (f"a batched sweep of {len(results.runs)} runs (compare them: python scripts/compare.py "
                f"{results.directory})" + "".join(f"\n  {name}: {summary(r)}"
                                                  for name, r in zip(results.names, results.runs)))
    return (f"total loss {results.initial_losses['total']:.4g} -> {results.final_losses['total']:.4g}  "
            f"({results.steps} steps, {results.loss_evaluations} loss evaluations, {results.wall_time_s:.1f} s)")


def score(results: StyleTransferResults | BatchedResults) -> float:
    """What a sweeper minimises: the final total loss (a batched sweep's best element's)."""
    if isinstance(results, BatchedResults):
        return min(score(r) for r in results.runs)
    return results.final_losses["total"]
