"""The `batched` benchmark section: a batched sweep of four style weights (`batch_sweep=true`) against the
same four runs one after another, as a multirun with the basic launcher runs them (Adam, same size and
steps, through `nst_research.nst.task.run`, CSV logging). The batch and the four runs each go in a fresh
process. Times are wall times of the whole runs: loading the network and images, writing the run
directories, and optimising (the batch shares all three)."""

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from nst_research.bench.measure import in_fresh_process
from nst_research.bench.nst import nst_config
from nst_research.nst.task import run

WEIGHTS = [1e4, 1e5, 1e6, 1e7]


def timed_runs(runs: list[list[str]], size: int, steps: int, device: str) -> float:
    """Seconds to run style transfers with these overrides one after another."""
    common = ["optimizer=adam", f"image_size={size}", f"iterations={steps}", f"trainer.accelerator={device}"]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers and the like
        start = time.perf_counter()
        for i, overrides in enumerate(runs):
            run(nst_config([*common, *overrides], Path(tmp) / str(i)))
        return time.perf_counter() - start


def run_section(devices: list[str], quick: bool) -> list[dict[str, Any]]:
    """One row per device: the batch's and the one-after-another runs' seconds, and their ratio."""
    size, steps = (48, 3) if quick else (128, 20)
    batch = [["batch_sweep=true", "style_weight=[" + ",".join(str(w) for w in WEIGHTS) + "]"]]
    rows = []
    for device in devices:
        batched = in_fresh_process(timed_runs, batch, size, steps, device)
        sequential = in_fresh_process(timed_runs, [[f"style_weight={w}"] for w in WEIGHTS], size, steps, device)
        rows.append({"device": device, "size": size, "batch": len(WEIGHTS), "steps": steps, "batched_s": batched,
                     "sequential_s": sequential, "speedup": sequential / batched})
    return rows
