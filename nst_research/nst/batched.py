"""Batched sweeps: several style transfers optimised as one batch, each saved as its own run.

`python scripts/run.py batch_sweep=true optimizer=adam style_weight=[1e4,1e5,1e6,1e7]` optimises
four images as one (4, 3, H, W) parameter: one forward and one backward of the feature network per
step serve all four. `style_weight`, `content_weight`, `tv_weight` and `seed` may be lists (of equal
lengths, or of one value). Element b is a run of its own in `<run dir>/<b>/`, laid out like a single
run's directory, with its own loggers (one W&B run each, grouped and named like a multirun's jobs),
so that `scripts/compare.py <run dir>` compares the elements as the jobs of a sweep.

Adam and SGD only: they update each pixel from its own gradient, and each element's loss depends
on its own pixels only, so the batch computes what separate runs would. L-BFGS couples the elements
through its line search and history.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from torch import Tensor

from nst_research.errors import RunDiverged, UserInputError
from nst_research.nst.images import save_image
from nst_research.nst.inputs import prepare_inputs
from nst_research.nst.module import StyleTransferModule
from nst_research.nst.run import (
    BATCH_KEYS,
    allow_tf32,
    build_objective,
    check_run_settings,
    divergence_hint,
    results_record,
    start_run_dir,
)
from nst_research.tracking.loggers import finish_loggers
from nst_research.tracking.results import write_results
from nst_research.tracking.sweep import sweep_group, with_sweep_job

ELEMENTWISE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.SGD")
WEIGHT_KEYS = ("content_weight", "style_weight", "tv_weight")


@dataclass
class Element:
    """One run of a batched sweep: its config (scalar values, its own output_dir), name and loggers."""

    cfg: DictConfig
    name: str
    loggers: list[Logger] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)


def check_batchable(cfg: DictConfig) -> None:
    """Refuse, in one line each, what a batched sweep does not do."""
    if cfg.optimizer._target_ not in ELEMENTWISE_OPTIMIZERS:
        raise UserInputError(f"batch_sweep=true supports optimizer=adam or sgd, not {cfg.optimizer._target_}: "
                             "L-BFGS couples the images through its line search and history; sweep it with -m")
    if cfg.get("sweep"):
        raise UserInputError("batch_sweep=true is a sweep in one run (one run directory per element): start it without -m")
    unsupported = {"multiscale.min_size": cfg.multiscale.min_size, "resume": cfg.get("resume"), "compile": cfg.get("compile")}
    for key, value in unsupported.items():
        if value:
            raise UserInputError(f"batch_sweep=true does not support {key}={value}; drop it, or sweep with -m instead")
    if cfg.model.get("weights") == "random" and isinstance(cfg.seed, ListConfig) and len(set(cfg.seed)) > 1:
        raise UserInputError(f"batch_sweep=true with random network weights and seed={list(cfg.seed)}: the batch shares "
                             "one network, so the seeds would not each draw their own; sweep the seeds with -m instead")


def batch_values(cfg: DictConfig) -> dict[str, list[Any]]:
    """Each batched key's value per element: lists of equal length; one value (or a one-value list) is shared."""
    values = {key: list(cfg[key]) if isinstance(cfg[key], ListConfig) else [cfg[key]] for key in BATCH_KEYS}
    size = max(len(v) for v in values.values())
    if any(len(v) not in (1, size) for v in values.values()):
        lengths = ", ".join(f"{key} has {len(v)}" for key, v in values.items() if isinstance(cfg[key], ListConfig))
        raise UserInputError(f"batch_sweep=true needs lists of equal length, but {lengths} values; "
                             f"give each of {', '.join(BATCH_KEYS)} the same number of values, or one")
    return {key: v * size if len(v) == 1 else v for key, v in values.items()}


def element_configs(cfg: DictConfig, values: dict[str, list[Any]]) -> list[Element]:
    """One scalar config per element, writing into `<run dir>/<b>`, recorded and named (in W&B) as a sweep job
    by the values that vary (`style_weight=10000.0`)."""
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
                                 "overrides": overrides})
        if "wandb" in (element.get("logger") or {}):
            with open_dict(element):
                element.logger.wandb.reinit = "create_new"  # the batch's W&B runs are open at the same time
        elements.append(Element(element, name))
    return elements


class BatchedStyleTransferModule(StyleTransferModule):
    """A `StyleTransferModule` whose image is a batch, element b being the run `elements[b]`.

    The optimizer minimises the sum of the elements' totals: its gradient is, element by element, the
    gradient of a separate run. Each element's losses go to its own loggers, on the steps a single run
    logs, and its images to its own run directory. No checkpoint is written: a batch is not resumed.
    """

    def __init__(self, *args: Any, elements: list[Element], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.elements = elements
        self.latest: list[dict[str, Tensor]] = []  # each element's terms at the latest evaluation
        self.initial_elements: list[dict[str, float]] = []

    def on_fit_start(self) -> None:
        masks = None if self.masks is None else list(self.masks.as_dict().values())
        self.objective.set_targets(self.content, list(self.styles.as_dict().values()), self.blend, masks)
        self.initial_elements = self.evaluate_elements()
        self.save_intermediate(self.run_step)

    @torch.no_grad()
    def evaluate_elements(self) -> list[dict[str, float]]:
        """Every loss term of each element's image as it would be saved (clamped to [0, 1])."""
        batch = self.objective.element_losses(self.current_image().clamp(0, 1))
        return [dict(zip(terms, torch.stack(list(terms.values())).tolist())) for terms in batch]

    def compute_losses(self) -> dict[str, Tensor]:
        self.latest = self.objective.element_losses(self.image)
        return {"total": sum(terms["total"] for terms in self.latest)}

    def log_losses(self, losses: dict[str, Tensor]) -> None:
        counters = {"loss_evaluations": float(self.loss_evaluations), "scale/size": float(max(self.image.shape[-2:]))}
        for element, terms in zip(self.elements, self.latest):
            values = torch.stack([v.detach() for v in terms.values()]).tolist()
            metrics = {**{f"loss/{k}": v for k, v in zip(terms, values)}, **counters}
            for logger in element.loggers:
                logger.log_metrics(metrics, step=self.run_step)

    def save_intermediate(self, step: int) -> None:
        for image, element in zip(self.output_image(), self.elements):
            save_image(image, element.output_dir / "intermediate" / f"step_{step:05d}.png")
        self.log_image("image", step)

    def log_image(self, key: str, step: int) -> None:
        for image, element in zip(self.output_image().cpu(), self.elements):
            for logger in element.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=key, images=[image], step=step)

    def diverged(self) -> list[int]:
        """The elements whose latest total loss is not finite."""
        return [b for b, terms in enumerate(self.latest) if not torch.isfinite(terms["total"])]


def run_batched(cfg: DictConfig) -> dict[str, Any]:
    """Run a batched sweep; write each element's run directory. Returns the elements' results (`runs`), their
    names and the sweep's directory. Every input is checked before anything is written."""
    check_batchable(cfg)
    values = batch_values(cfg)
    elements = element_configs(cfg, values)
    for element in elements:
        check_run_settings(element.cfg)
    pl.seed_everything(elements[0].cfg.seed, workers=True, verbose=False)
    inputs = [prepare_inputs(element.cfg) for element in elements]  # the same but for `init` (seeds)
    shared = inputs[0]
    objective = build_objective(OmegaConf.merge(cfg, {key: values[key] for key in WEIGHT_KEYS}))  # one per element
    for image in (shared.content, *shared.styles):
        objective.features.check_size(image)
    optimizer = instantiate(cfg.optimizer)
    allow_tf32(True)

    for element in elements:
        element.loggers = start_run_dir(element.cfg, shared)
        (element.output_dir / ".hydra").mkdir()  # what compare.py labels the run by, as for a multirun's job
        OmegaConf.save(element.cfg.sweep.overrides, element.output_dir / ".hydra" / "overrides.yaml")
    module: BatchedStyleTransferModule | None = None
    start = time.perf_counter()
    statuses, errors = ["failed"] * len(elements), [None] * len(elements)
    try:
        module = BatchedStyleTransferModule(
            objective, shared.content, shared.styles, shared.blend, torch.cat([x.init for x in inputs]), optimizer,
            iterations=cfg.iterations, save_every=cfg.save_every, output_dir=Path(cfg.output_dir),
            chroma=None if shared.chroma is None else torch.cat([x.chroma for x in inputs]), masks=shared.masks,
            ema_decay=cfg.ema_decay, elements=elements)
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, default_root_dir=cfg.output_dir)
        trainer.fit(module)
        statuses = ["completed"] * len(elements)
    except (KeyboardInterrupt, SystemExit):
        statuses = ["interrupted"] * len(elements)
        raise
    except RunDiverged as diverged:
        statuses, errors = divergence(module, elements, diverged.step)
        first = next(b for b, status in enumerate(statuses) if status == "diverged")
        raise RunDiverged(f"{elements[first].name}: {errors[first]} ({statuses.count('diverged')} of "
                          f"{len(elements)} diverged; the batch stopped)", diverged.step) from None
    finally:
        runs = save_outcomes(module, elements, statuses, errors, time.perf_counter() - start)
    return {"task": "nst", "status": "completed", "result": ".", "directory": cfg.output_dir, "runs": runs,
            "names": [element.name for element in elements]}


def divergence(module: BatchedStyleTransferModule, elements: list[Element],
               step: int) -> tuple[list[str], list[str | None]]:
    """Each element's status and error when the batch's loss stopped being finite: `diverged` for those
    whose own loss did, `failed` (stopped with the batch) for the others."""
    bad = module.diverged()
    statuses, errors = [], []
    for b, element in enumerate(elements):
        if b in bad:
            statuses.append("diverged")
            errors.append(f"the total loss became {module.latest[b]['total'].item()} at step {step}; "
                          f"{divergence_hint(element.cfg, step)}; the last finite image is in "
                          f"{element.output_dir}/result.png")
        else:
            statuses.append("failed")
            errors.append(f"stopped at step {step} with its batch: {', '.join(elements[d].name for d in bad)} diverged")
    return statuses, errors


def save_outcomes(module: BatchedStyleTransferModule | None, elements: list[Element], statuses: list[str],
                  errors: list[str | None], wall_time: float) -> list[dict[str, Any]]:
    """Each element's image as it stands (finished or not), final losses (to its loggers) and results.json,
    as a single run's; end the loggers. `wall_time` is the batch's."""
    scales: list[list[dict[str, Any]]] = [[] for _ in elements]
    try:
        if module is not None and module.initial_elements:  # it started: its images are the runs' latest
            size, step = list(module.image.shape[-2:]), module.run_step
            module.log_image("result", step)
            for b, (element, image, final) in enumerate(zip(elements, module.output_image(),
                                                              module.evaluate_elements())):
                scales[b].append({"image_size": size, "steps": module.scale_steps,
                                  "loss_evaluations": module.loss_evaluations,
                                  "initial_losses": module.initial_elements[b], "final_losses": final})
                save_image(image, element.output_dir / "result.png")
                for logger in element.loggers:
                    logger.log_metrics({f"scale/{max(size)}px/{k}": v for k, v in final.items()}, step=step)
                    logger.log_metrics({f"final/{k}": v for k, v in final.items()}, step=step)
    finally:
        for element, status in zip(elements, statuses):
            finish_loggers(element.loggers, "success" if status == "completed" else "failed")
    runs = []
    for element, status, error, records in zip(elements, statuses, errors, scales):
        runs.append(results_record(status, records, wall_time, element.cfg.seed, module, error))
        write_results(element.output_dir / "results.json", runs[-1])
    return runs
