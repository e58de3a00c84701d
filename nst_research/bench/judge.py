"""What judging costs: the judge's reference and score against a default run's steps at the same size.

A run prepares the judge's reference once per scale size and scores each scale's end and its result, so a
single-scale run pays one `prepare` and one `score`; the share is that against the steps of a default run
(the default objective and L-BFGS, `iterations` steps, each one loss evaluation).
"""

import statistics
import time
from typing import Any

import torch

from nst_research.bench.measure import compose_config, synchronize
from nst_research.nst.inputs import prepare_inputs
from nst_research.nst.task import build_objective
from nst_research.parts import build

ROUNDS = 3


def median_seconds(fn: Any, device: torch.device, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def judge_case(size: int, device: str, steps: int, rounds: int = ROUNDS) -> dict[str, Any]:
    """One size: the judge's build, reference and score times, a default step, and the judge's share of a run."""
    cfg = compose_config([f"image_size={size}"])
    target = torch.device(device)
    start = time.perf_counter()
    judge = build(cfg.judge).to(target)
    built = time.perf_counter() - start
    inputs = prepare_inputs(cfg.content, cfg.style, size)
    content, styles = inputs.content.to(target), [s.to(target) for s in inputs.styles]
    objective = build_objective(cfg).to(target)
    objective.set_targets(content, styles, inputs.blend)
    image = content.clone().requires_grad_(True)

    def step() -> None:
        image.grad = None
        objective(image)["total"].backward()

    step()  # warm-up
    step_s = median_seconds(step, target, rounds)
    reference = judge.prepare(content, styles)
    prepare_s = median_seconds(lambda: judge.prepare(content, styles), target, rounds)
    score_s = median_seconds(lambda: judge.score(image.detach(), reference), target, rounds)
    run_s = steps * step_s
    return {"size": size, "device": device, "build_s": round(built, 3), "prepare_s": round(prepare_s, 3),
            "score_s": round(score_s, 3), "step_s": round(step_s, 3), "run_steps": steps,
            "judge_share_pct": round(100 * (prepare_s + score_s) / run_s, 2)}


def run_section(devices: list[str], quick: bool) -> list[dict[str, Any]]:
    sizes = [48] if quick else [128, 256, 512]
    steps = 2 if quick else compose_config([]).iterations
    return [judge_case(size, device, steps, rounds=1 if quick else ROUNDS) for device in devices for size in sizes]
