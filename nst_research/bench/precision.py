"""The precision benchmark: step time of a run through the framework in each number format and memory layout
(`precision=`, `channels_last=`) at each size, for L-BFGS and Adam, and the time-to-quality candidates that
change only the precision (`--quality-candidates precision`: measured by their loss in fp32)."""

from functools import partial
from typing import Any

from nst_research.bench.measure import Measurement
from nst_research.bench.nst import alternating, framework_case

PRECISIONS = {  # name: overrides of a default run
    "fp32": [],
    "fp32 + channels_last": ["channels_last=true"],
    "bf16": ["precision=bf16"],
    "bf16 + channels_last": ["precision=bf16", "channels_last=true"],
}
QUALITY_CANDIDATES = {name: overrides for name, overrides in PRECISIONS.items() if name.startswith("bf16")}


def run_section(devices: list[str], quick: bool) -> list[Measurement]:
    """Each precision's step time through the framework, the precisions alternating in fresh processes (not
    judged: the judge runs after the last step, in fp32 whatever the precision)."""
    variants = {name: partial(framework_case, overrides=[*overrides, "judge=none"])
                for name, overrides in PRECISIONS.items()}
    return alternating("precision", variants, devices, quick)


def versus_fp32(rows: list[Measurement]) -> list[dict[str, Any]]:
    """Each precision's median step time, and fp32's over it (above 1: faster than fp32), per optimizer, size and
    device."""
    measured = {}
    for row in rows:
        if row.section == "precision":
            name = next(name for name in PRECISIONS if row.case.endswith(f" {name}"))
            measured[(row.device, row.case.removesuffix(f" {name}"), name)] = row.median_step_ms
    return [{"case": case, "device": device, "precision": name, "median_ms": ms,
             "speedup": measured[(device, case, "fp32")] / ms} for (device, case, name), ms in measured.items()]
