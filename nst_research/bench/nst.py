"""The style-transfer benchmark sections.

`nst`: median step time and peak memory at each size, for L-BFGS and Adam, twice: through the
framework (`nst_research.nst.task.run`: Lightning, logging to CSV every step, clamping, divergence
checks) and as a minimal plain-PyTorch loop over the same objective and optimizer. Their ratio is
the framework's overhead, measured in the same run.

`time_to_quality`: the default single-scale L-BFGS run at each size and content:style pair gives a
final total loss; each candidate way to get there sooner (multi-scale, Adam with its moments carried
across scales, L-BFGS settings, other parameterizations of the image; or another precision,
`nst_research.bench.precision`) then runs until its loss at the final size reaches that loss, and the
wall times and steps are compared.
"""

import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nst_research.bench.measure import (
    Measurement,
    compose_config,
    in_fresh_process,
    peak_memory_mib,
    reset_peak_memory,
    resident_mib,
    step_measurement,
    synchronize,
)
from nst_research.bench.trace import read_trace
from nst_research.errors import RunDiverged
from nst_research.nst.task import build_objective, input_loader, run

OPTIMIZERS = ["lbfgs", "adam"]
# size: (rounds, warm-up steps, timed steps). Framework and plain loop alternate, one fresh process per
# round each, and each pools its rounds' steps: this machine's speed drifts by 10 % within a minute.
SCHEDULE = {128: (1, 2, 10), 256: (3, 2, 8), 512: (1, 1, 3)}
MULTISCALE_MIN_SIZE = 128
MULTISCALE = [f"multiscale.min_size={MULTISCALE_MIN_SIZE}", "multiscale.iterations=50"]
QUICK_MULTISCALE = ["multiscale.min_size=32", "multiscale.iterations=5"]


def nst_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The run's config, with CSV logging and no progress bar or intermediate images in the timed steps, in fp32
    unless `overrides` set another precision: the default's `precision=auto` differs between machines, and the
    plain loop and the rows of other machines are fp32."""
    return compose_config(["task=nst", "precision=32", "logger=csv", "+trainer.enable_progress_bar=false",
                           "save_every=100000", f"output_dir={output_dir}", *overrides])


def traced_run(cfg: DictConfig, start: float, **trace: Any) -> tuple[Any, list[dict[str, float]]]:
    """`run(cfg)` with a `StepTrace` callback; returns its results (the `RunDiverged` error if it diverged)
    and the trace."""
    path = Path(cfg.output_dir) / "trace.jsonl"
    callback = {"_target_": "nst_research.bench.trace.StepTrace", "path": str(path), "start": start, **trace}
    OmegaConf.update(cfg, "trainer.callbacks", [callback], force_add=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers and the like
        try:
            results = run(cfg)
        except RunDiverged as diverged:
            results = diverged
    return results, read_trace(path)


def framework_case(optimizer: str, size: int, device: str, warmup: int, steps: int,
                   overrides: Sequence[str] = ()) -> tuple[list[float], float]:
    """Timed steps' durations and the peak memory of a run through the framework (`run`), with `overrides`."""
    baseline = resident_mib()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = nst_config([f"optimizer={optimizer}", f"image_size={size}", f"iterations={warmup + steps}",
                          f"trainer.accelerator={device}", *overrides], Path(tmp))
        reset_peak_memory(device)
        _, trace = traced_run(cfg, time.perf_counter())
    return durations([point["time"] for point in trace][warmup - 1:]), peak_memory_mib(device, baseline)


def plain_case(optimizer: str, size: int, device: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """The same computation without the framework: objective, parameterization, optimizer and clamp in a bare
    loop."""
    baseline = resident_mib()
    cfg = nst_config([f"optimizer={optimizer}", f"image_size={size}"], Path("."))
    inputs = input_loader(cfg)(size)
    objective = build_objective(cfg).to(device)
    reset_peak_memory(device)
    objective.set_targets(inputs.content.to(device), [style.to(device) for style in inputs.styles], inputs.blend)
    image = instantiate(cfg.parameterization)(inputs.init.to(device))
    step = instantiate(cfg.optimizer)(list(image.parameters()))

    def closure() -> torch.Tensor:
        step.zero_grad()
        loss = objective(image())["total"]
        loss.backward()
        return loss

    times = []
    for _ in range(warmup + steps):
        step.step(closure)
        with torch.no_grad():
            image.assign(image().clamp(0, 1))
        synchronize(torch.device(device))
        times.append(time.perf_counter())
    return durations(times[warmup - 1:]), peak_memory_mib(device, baseline)


def durations(ends: list[float]) -> list[float]:
    """Step durations from the end times of the timed steps (and of the step before them)."""
    return [b - a for a, b in zip(ends, ends[1:])]


def overhead(rows: list[Measurement]) -> list[dict[str, Any]]:
    """Framework median step time over the plain loop's, per optimizer, size and device."""
    by_case = {(row.device, row.case): row for row in rows if row.section == "nst"}
    ratios = []
    for (device, case), row in by_case.items():
        if case.endswith(" framework"):
            plain = by_case[(device, case.replace(" framework", " plain"))]
            ratios.append({"case": case.removesuffix(" framework"), "device": device,
                           "framework_ms": row.median_step_ms, "plain_ms": plain.median_step_ms,
                           "ratio": row.median_step_ms / plain.median_step_ms})
    return ratios


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    """Framework and plain loop for each device, size and optimizer."""
    return alternating("nst", {"framework": framework_case, "plain": plain_case}, devices, quick)


def alternating(section: str, variants: dict[str, Callable[..., tuple[list[float], float]]], devices: list[str],
                quick: bool) -> list[Measurement]:
    """Each variant (`case(optimizer, size, device, warmup, steps)`) for each device, size and optimizer, the
    variants alternating round by round, each round a fresh process: its median step time over all rounds
    (case `<optimizer> <size>px <variant>`), peak memory the largest of them."""
    rows = []
    for device in devices:
        for size, (rounds, warmup, steps) in ({64: (1, 2, 3)} if quick else SCHEDULE).items():
            for optimizer in OPTIMIZERS:
                timings = {name: [] for name in variants}
                for _ in range(rounds):
                    for name, case in variants.items():
                        timings[name].append(in_fresh_process(case, optimizer, size, device, warmup, steps))
                rows += [step_measurement(section, f"{optimizer} {size}px {name}", device, 1,
                                          [step for round_steps, _ in runs for step in round_steps],
                                          max(peak for _, peak in runs)) for name, runs in timings.items()]
    return rows


def candidates(quick: bool) -> dict[str, list[str]]:
    """Ways to reach the default run's loss in fewer steps, each as its overrides on the default run."""
    multiscale = QUICK_MULTISCALE if quick else MULTISCALE
    return {
        "multi-scale, L-BFGS": multiscale,
        "multi-scale, Adam": ["optimizer=adam", *multiscale],
        "multi-scale, Adam, moments carried": ["optimizer=adam", *multiscale, "multiscale.carry_optimizer_state=true"],
        "L-BFGS history 20": ["optimizer.history_size=20"],
        "L-BFGS strong Wolfe line search": ["optimizer.line_search_fn=strong_wolfe"],
        "Laplacian pyramid": ["parameterization=laplacian"],
        "spectrum 1/f^0.5": ["parameterization=spectrum"],
        "spectrum 1/f^0.5, decorrelated colours": ["parameterization=spectrum",
                                                   "parameterization.decorrelate_colors=true"],
    }


def quality_run(size: int, device: str, overrides: list[str], target_loss: float | None,
                budget_s: float | None) -> dict[str, Any]:
    """One run at `size`, until its end, `target_loss` at the final size or `budget_s`.

    Returns its steps and loss evaluations (all scales) and the wall time from the start, to the end or to
    reaching `target_loss` (None if it did not), and its last total loss at the final size; a run that
    diverged gives its step as `diverged_at` and its last finite loss."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = nst_config([f"image_size={size}", f"trainer.accelerator={device}", *overrides], Path(tmp))
        start = time.perf_counter()
        results, trace = traced_run(cfg, start, final_size=size, target_loss=target_loss, budget_s=budget_s)
    finished_scales = 0  # each scale's module counts its own evaluations
    for point, following in zip(trace, [*trace[1:], None]):
        point["evaluations"] += finished_scales
        if following is not None and following["size"] != point["size"]:
            finished_scales = point["evaluations"]
    final = [point for point in trace if point["size"] == size and point["loss"] is not None]
    if isinstance(results, RunDiverged):  # its loss: the last finite one
        finite = [point for point in final if math.isfinite(point["loss"])]
        return {"steps": results.step, "evaluations": trace[-1]["evaluations"] if trace else 0, "wall_s": None,
                "loss": finite[-1]["loss"] if finite else None, "diverged_at": results.step}
    if target_loss is None:
        return {"steps": results.steps, "evaluations": results.loss_evaluations, "wall_s": final[-1]["time"] - start,
                "loss": results.final_losses["total"]}
    end = next((point for point in final if point["loss"] <= target_loss), None)
    reached = end is not None
    end = end or trace[-1]
    return {"steps": end["step"], "evaluations": end["evaluations"], "wall_s": end["time"] - start if reached else None,
            "loss": final[-1]["loss"] if final else None}


def quality_section(devices: list[str], quick: bool, sizes: list[int], pairs: list[tuple[str, str]],
                    budget: float, tried: dict[str, list[str]]) -> list[dict[str, Any]]:
    """For each size and content:style pair, the default run in fp32 (single-scale L-BFGS, 200 steps) gives its final
    loss and wall time; each candidate of `tried` (name: overrides) then runs until its loss at the final size reaches
    that loss, or for `budget` times the default's wall time. Rows: the steps, loss evaluations and wall time each
    took to reach it (wall time None if it did not), its time over the default's, and its last loss. Losses are
    fp32: a candidate that computes in bf16 is measured in fp32 (`StepTrace`)."""
    common = ["iterations=10"] if quick else []
    rows = []
    for device in devices:
        for size in [64] if quick else sizes:
            for content, style in pairs:
                inputs = [f"content={content}", f"style={style}", *common]
                default = in_fresh_process(quality_run, size, device, inputs, None, None)
                rows.append(quality_row(size, device, content, style, "fp32 default (L-BFGS, pixels)", default,
                                        default))
                for name, overrides in tried.items():
                    result = in_fresh_process(quality_run, size, device, [*inputs, *overrides], default["loss"],
                                              budget * default["wall_s"])
                    rows.append(quality_row(size, device, content, style, name, result, default))
    return rows


def quality_row(size: int, device: str, content: str, style: str, candidate: str, result: dict[str, Any],
                default: dict[str, Any]) -> dict[str, Any]:
    wall_s = result["wall_s"]
    return {"size": size, "device": device, "pair": f"{content}:{style}", "candidate": candidate,
            "steps": result["steps"], "evaluations": result["evaluations"], "wall_s": wall_s,
            "time_ratio": None if wall_s is None else wall_s / default["wall_s"], "loss": result["loss"],
            "target_loss": default["loss"], "diverged_at": result.get("diverged_at")}


def memory_case(size: int, device: str) -> Measurement:
    """Adam at a large size: one warm-up step and one timed step, for the peak memory."""
    steps, peak = framework_case("adam", size, device, warmup=1, steps=1)
    return step_measurement("memory", f"adam {size}px framework", device, 1, steps, peak)


def memory_section(devices: list[str], quick: bool) -> list[Measurement]:
    """Peak memory of Adam at 1024 and 2048 px (quick: 128 px)."""
    return [in_fresh_process(memory_case, size, device) for device in devices
            for size in ([128] if quick else [1024, 2048])]
