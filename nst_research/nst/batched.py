"""Batched sweeps: several style transfers optimised as one batch, each saved as its own run.

`python scripts/run.py batch_sweep=true optimizer=adam style_weight=[1e4,1e5,1e6,1e7]` optimises
four images as one (4, 3, H, W) parameter: one forward and one backward of the feature network per
step serve all four. `style_weight`, `content_weight`, `tv_weight` and `seed` may be lists (of equal
lengths, or of one value). Element b is a run of its own in `<run dir>/<b>/`, with its own
`RunLifecycle` (config.yaml, loggers, results.json; one W&B run each, grouped and named like a
multirun's jobs), so that `scripts/compare.py <run dir>` compares the elements as the jobs of a sweep.

Adam and SGD only: they update each pixel from its own gradient, and each element's loss depends
on its own pixels only, so the batch computes what separate runs would. L-BFGS couples the elements
through its line search and history.
"""

import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from torch import Tensor

from nst_research.errors import RunDiverged, UserInputError
from nst_research.judge.runs import RunJudge, metrics
from nst_research.nst.images import save_image
from nst_research.nst.inputs import StyleTransferInputs
from nst_research.nst.module import StyleTransferModule
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.results import BatchedResults, ScaleRecord, StyleTransferResults
from nst_research.tracking.lifecycle import RunLifecycle
from nst_research.tracking.loggers import log_images

ELEMENTWISE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.SGD")
WEIGHT_KEYS = ("content_weight", "style_weight", "tv_weight")


@dataclass
class Element:
    """One run of a batched sweep: its name, directory, resolved config, logger nodes and divergence hint."""

    name: str
    output_dir: Path
    overrides: list[str]
    config: dict[str, Any]
    loggers: Mapping[str, Any] | None
    seed: int
    hint: Callable[[int], str]
    run: RunLifecycle | None = None


def check_batchable(optimizer: str, sweep: bool, random_weights: bool, options: dict[str, Any],
                    seeds: list[int] | None = None) -> None:
    """Refuse, in one line each, what a batched sweep does not do."""
    if optimizer not in ELEMENTWISE_OPTIMIZERS:
        raise UserInputError(f"batch_sweep=true supports optimizer=adam or sgd, not {optimizer}: "
                             "L-BFGS couples the images through its line search and history; sweep it with -m")
    if sweep:
        raise UserInputError("batch_sweep=true is a sweep in one run (one run directory per element): "
                             "start it without -m")
    for key, value in options.items():
        if value:
            raise UserInputError(f"batch_sweep=true does not support {key}={value}; drop it, or sweep with -m instead")
    if random_weights and seeds is not None and len(set(seeds)) > 1:
        raise UserInputError(f"batch_sweep=true with random network weights and seed={seeds}: the batch shares "
                             "one network, so the seeds would not each draw their own; sweep the seeds with -m instead")


def batch_values(values: dict[str, Any]) -> dict[str, list[Any]]:
    """Each batched key's value per element: lists of equal length; one value (or a one-value list) is shared."""
    lists = {key: list(v) if isinstance(v, list | tuple) else [v] for key, v in values.items()}
    size = max(len(v) for v in lists.values())
    if any(len(v) not in (1, size) for v in lists.values()):
        lengths = ", ".join(f"{key} has {len(lists[key])}" for key, v in values.items() if isinstance(v, list | tuple))
        raise UserInputError(f"batch_sweep=true needs lists of equal length, but {lengths} values; "
                             f"give each of {', '.join(values)} the same number of values, or one")
    return {key: v * size if len(v) == 1 else v for key, v in lists.items()}


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
        """Every loss term of each element's image as it would be saved (clamped to [0, 1]), in fp32."""
        batch = self.objective.element_losses(self.current_image().clamp(0, 1), exact=True)
        return [dict(zip(terms, torch.stack(list(terms.values())).tolist())) for terms in batch]

    def compute_losses(self) -> dict[str, Tensor]:
        self.latest = self.objective.element_losses(self.image)
        return {"total": sum(terms["total"] for terms in self.latest)}

    def log_losses(self, losses: dict[str, Tensor]) -> None:
        counters = {"loss_evaluations": float(self.loss_evaluations), "scale/size": float(max(self.image_size))}
        for element, terms in zip(self.elements, self.latest):
            values = torch.stack([v.detach() for v in terms.values()]).tolist()
            metrics = {**{f"loss/{k}": v for k, v in zip(terms, values)}, **counters}
            for logger in element.run.loggers:
                logger.log_metrics(metrics, step=self.run_step)

    def save_intermediate(self, step: int, with_metrics: bool = False) -> None:
        """Each element's image; its own W&B row at the step (its losses went straight to its loggers)."""
        for image, element in zip(self.output_image(), self.elements):
            save_image(image, element.output_dir / "intermediate" / f"step_{step:05d}.png")
        self.log_image("image", step)

    def log_image(self, key: str, step: int, with_metrics: bool = False) -> None:
        for image, element in zip(self.output_image().cpu(), self.elements):
            log_images(element.run.loggers, key, [image], step, with_metrics)

    def diverged(self) -> list[int]:
        """The elements whose latest total loss is not finite."""
        return [b for b, terms in enumerate(self.latest) if not torch.isfinite(terms["total"])]


def run(elements: list[Element], inputs: list[StyleTransferInputs], objective: StyleTransferObjective,
        optimizer: Callable, trainer: pl.Trainer, *, iterations: int, output_dir: Path, judging: RunJudge | None,
        **module_options: Any) -> BatchedResults:
    """Run a batched sweep; each element is a run with its own lifecycle and directory, its result judged by
    `judging` (if given). `inputs` are the elements' (the same but for the start image, which depends on the
    seed)."""
    shared = inputs[0]
    module = BatchedStyleTransferModule(
        objective, shared.content, shared.styles, shared.blend, torch.cat([x.init for x in inputs]), optimizer,
        iterations=iterations, output_dir=output_dir,
        chroma=None if shared.chroma is None else torch.cat([x.chroma for x in inputs]), masks=shared.masks,
        elements=elements, **module_options)
    started = time.perf_counter()  # every element's wall_time_s is the batch's
    with ExitStack() as stack:
        for b, element in enumerate(elements):
            element.run = stack.enter_context(RunLifecycle(element.output_dir, element.config, element.loggers,
                                                           task="nst", started=started))
            element.run.on_finish(partial_outcome(module, elements, b, judging))
            save_image(shared.content, element.output_dir / "content.png")
            for i, style in enumerate(shared.styles):
                save_image(style, element.output_dir / ("style.png" if len(shared.styles) == 1 else f"style_{i}.png"))
            (element.output_dir / ".hydra").mkdir(exist_ok=True)  # what compare.py labels the run by
            (element.output_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(element.overrides))
        trainer.loggers = []
        try:
            trainer.fit(module)
        except RunDiverged as diverged:
            bad = module.diverged() or [0]
            first = elements[bad[0]]
            raise RunDiverged(f"{first.name}: the total loss became {module.latest[bad[0]]['total'].item()} at step "
                              f"{diverged.step}; {first.hint(diverged.step)} ({len(bad)} of {len(elements)} "
                              "diverged; the batch stopped)", diverged.step) from None
        finally:  # before each element's results are judged and written, one after another
            for element in elements:
                element.run.stop_clock()
    return BatchedResults(status="completed", result=".", directory=str(output_dir),
                          names=[e.name for e in elements], runs=[e.run.results for e in elements])


def partial_outcome(module: BatchedStyleTransferModule, elements: list[Element], b: int,
                    judging: RunJudge | None) -> Callable[[str, str | None], StyleTransferResults]:
    """Element b's `on_finish`: its image as it stands, judged, and its results; when the batch diverged,
    `diverged` for an element whose own loss did and `failed` (stopped with its batch) for the others."""

    def finish(status: str, error: str | None) -> StyleTransferResults:
        element = elements[b]
        if status == "diverged":
            bad = module.diverged()
            if b in bad:
                error = (f"the total loss became {module.latest[b]['total'].item()} at step {module.run_step}; "
                         f"{element.hint(module.run_step)}; "
                         f"the last finite image is in {element.output_dir}/result.png")
            else:
                status = "failed"
                error = (f"stopped at step {module.run_step} with its batch: "
                         f"{', '.join(elements[d].name for d in bad)} diverged")
        scales = []
        if module.initial_elements:  # it started: its image is the run's latest
            final = module.evaluate_elements()[b]
            size, step, image = module.image_size, module.run_step, module.output_image()[b:b + 1]
            scores = None if judging is None else judging.score(image)
            scales.append(ScaleRecord(image_size=size, steps=module.scale_steps,
                                      loss_evaluations=module.loss_evaluations,
                                      initial_losses=module.initial_elements[b], final_losses=final, eval=scores))
            save_image(image, element.output_dir / "result.png")
            log_images(element.run.loggers, "result", [image[0].cpu()], step, with_metrics=True)
            judged = {} if scores is None else {**metrics(scores, f"scale/{max(size)}px/"), **metrics(scores)}
            for logger in element.run.loggers:
                logger.log_metrics({f"scale/{max(size)}px/{k}": v for k, v in final.items()}, step=step)
                logger.log_metrics({**{f"final/{k}": v for k, v in final.items()}, **judged}, step=step)
        return StyleTransferResults.of(status, scales, element.seed, str(module.device), error,
                                       judge=None if judging is None else judging.judge.settings(),
                                       precision=module.objective.precision.record())

    return finish
