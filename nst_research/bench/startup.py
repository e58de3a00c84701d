"""The `startup` benchmark section: where a style-transfer run's time goes before its first step and after
its last, and how long the command line takes to answer.

Every case runs in a fresh Python process, the cases alternating round by round; the table gives each
one's median (and range) over the rounds.

- `command`: the wall time of `scripts/run.py --help`, `--cfg job`, a misspelt key and a missing content
  image; and for reference the time from a process's start to the end of `import lightning.pytorch`.
- `run`: `python scripts/run.py image_size=256 iterations=5` with the default loggers (W&B, offline here,
  and CSV) and a `StepMarks` callback: the time from the process's start to the first step's start, the
  steps, and the time from the last step's end to the process's end. "Beyond import lightning.pytorch" is
  its time to the first step less the reference above.
- `before first step` and `after last step`: the same run traced (`traced_child`): `scripts/run.py`'s own
  code in one process, with the functions a run goes through (`TRACED`) wrapped so that each second is
  charged to the innermost of them running at the time (time inside none of them is "other"), and split
  at the first step's start and the last step's end. The heavy imports are timed first, one after the
  other, in the order the run meets them. `calls` counts how often a wrapped function ran; the garbage
  collector's passes (`gc.callbacks`) are a row of their own.

Only the standard library is imported here: the traced process times its own imports.
"""

import builtins
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUN_SCRIPT = REPO / "scripts" / "run.py"
COMMANDS = {  # name: the command line after `python`
    "scripts/run.py --help": [str(RUN_SCRIPT), "--help"],
    "scripts/run.py --cfg job": [str(RUN_SCRIPT), "--cfg", "job"],
    "scripts/run.py style_wieght=1 (misspelt key)": [str(RUN_SCRIPT), "style_wieght=1"],
    "scripts/run.py content=missing.jpg": [str(RUN_SCRIPT), "content=missing.jpg"],
}
EXPECTED_STATUS = {"scripts/run.py style_wieght=1 (misspelt key)": 2, "scripts/run.py content=missing.jpg": 2}
LIGHTNING_IMPORT = "import lightning.pytorch (process start to imported)"
LIGHTNING_CODE = "import time, lightning.pytorch; print(time.monotonic())"
OTHER = "other (code outside the traced functions)"
CHECKS = "checks: numbers, layer names, image headers"
IMPORTS = {  # top-level package: label, for its first import
    "hydra": "import Hydra",
    "torch": "import torch",
    "lightning": "import lightning (beyond torch)",
    "wandb": "import wandb",
}
TRACED = [  # (module, attribute, label): the functions a style-transfer run goes through
    ("nst_research.cli", "check", "command-line check (Hydra's parser)"),
    ("nst_research.app", "task_module", "import the task's modules (beyond torch and Lightning)"),
    ("hydra._internal.config_loader_impl", "ConfigLoaderImpl.load_configuration", "Hydra: compose the config"),
    ("nst_research.cli", "run_app", "Hydra: its run set-up and end (run dir, logging, .hydra/)"),
    ("nst_research.app", "check_before_loading", CHECKS),
    ("nst_research.nst.task", "run", "task: other (seed, optimizer, module)"),
    ("nst_research.nst.task", "check", CHECKS),
    ("nst_research.packaged", "verify_sha256", "weights file: sha256 check (cache look-up)"),
    ("nst_research.packaged", "sha256", "weights file: sha256 hashing"),
    ("nst_research.nst.task", "build_objective", "weights file: load; VGG and loss terms built"),
    ("nst_research.nst.task", "prepare_inputs", "images: read, resize"),
    ("nst_research.nst.task", "make_trainer", "Lightning: Trainer construction"),
    ("nst_research.tracking.lifecycle", "RunLifecycle.__enter__", "run dir, config.yaml, hyper-parameters"),
    ("nst_research.tracking.lifecycle", "instantiate_loggers", "loggers: CSV"),
    ("nst_research.tracking.loggers", "wandb_logger", "W&B start (offline)"),
    ("nst_research.nst.task", "write_inputs", "content.png, style.png"),
    ("lightning.pytorch", "Trainer.fit", "Lightning: fit's own set-up and end"),
    ("nst_research.nst.objective", "StyleTransferObjective.set_targets", "targets: VGG on content and style"),
    ("nst_research.nst.module", "StyleTransferModule.evaluate", "losses of the image: VGG forward"),
    ("nst_research.nst.module", "StyleTransferModule.save_intermediate", "step-0 image: PNG, checkpoint.pt, W&B"),
    ("nst_research.nst.task", "save_outcome", "result.png, checkpoint.pt, final/ metrics"),
    ("nst_research.tracking.lifecycle", "write_results", "results.json"),
    ("nst_research.tracking.lifecycle", "publish", "W&B results table and artifacts"),
    ("nst_research.tracking.lifecycle", "finish_loggers", "W&B finish; CSV flush"),
]
GC = "Python's garbage collector"
PYTHON_START = "Python start-up"
PYTHON_EXIT = "Python exit (W&B service, atexit)"


def run_overrides(size: int, steps: int, run_dir: Path) -> list[str]:
    """The benchmark run's command line: the default run at `size` for `steps` steps, writing into `run_dir`,
    with a `StepMarks` callback."""
    marks = f"{{_target_:nst_research.bench.marks.StepMarks,path:'{run_dir / 'marks.json'}'}}"
    return [f"image_size={size}", f"iterations={steps}", f"hydra.run.dir='{run_dir}'", f"+trainer.callbacks=[{marks}]"]


class Tracer:
    """Charges the time that passes to the innermost traced call running (or to `OTHER`) in the current phase
    (`before`, `steps`, `after`): each call's own time, without the traced calls inside it."""

    def __init__(self, start: float) -> None:
        self.phase, self.stack, self.last = "before", [OTHER], start
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.traced: set[tuple[str, str]] = set()  # (module, attribute) of the functions wrapped

    def charge(self) -> float:
        now = time.monotonic()
        self.seconds[self.phase][self.stack[-1]] += now - self.last
        self.last = now
        return now

    def enter(self, label: str) -> None:
        self.charge()
        self.stack.append(label)
        self.calls[self.phase][label] += 1

    def leave(self) -> None:
        self.charge()
        self.stack.pop()

    def mark(self, phase: str) -> float:
        now = self.charge()
        self.phase = phase
        return now

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def traced(*args: Any, **kwargs: Any) -> Any:
            self.enter(label)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()

        traced.__wrapped__ = function
        return traced


TRACER: Tracer | None = None  # set in a traced process


def mark(phase: str) -> float:
    """Now (`time.monotonic()`); in a traced process, the run enters `phase` (`steps`, `after`) now."""
    return TRACER.mark(phase) if TRACER is not None else time.monotonic()


def trace_functions(tracer: Tracer, loaded_only: bool) -> None:
    """Replace each function of `TRACED` not replaced yet by its traced wrapper, where the run looks it up;
    with `loaded_only`, only those whose module is loaded."""
    for module_name, attribute, label in TRACED:
        if (module_name, attribute) in tracer.traced or (loaded_only and module_name not in sys.modules):
            continue
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, tracer.wrap(getattr(owner, name), label))
        tracer.traced.add((module_name, attribute))


def traced_child() -> None:
    """`python -c "from nst_research.bench.startup import traced_child; traced_child()" TRACE ARGS...`: run
    `scripts/run.py ARGS...` in this process, traced, and write the trace to TRACE (JSON). The first import
    of each package of `IMPORTS` and the garbage collector's passes are charged to rows of their own."""
    global TRACER
    start = time.monotonic()
    trace_path, args = sys.argv[1], sys.argv[2:]
    tracer = TRACER = Tracer(start)
    importing = builtins.__import__

    def first_import(name: str, *args: Any, **kwargs: Any) -> Any:
        package = name.partition(".")[0]
        if package not in IMPORTS or package in sys.modules or kwargs.get("level", args[3] if len(args) > 3 else 0):
            return importing(name, *args, **kwargs)
        tracer.enter(IMPORTS[package])
        try:
            return importing(name, *args, **kwargs)
        finally:
            tracer.leave()

    def collecting(phase: str, info: dict[str, int]) -> None:
        tracer.enter(GC) if phase == "start" else tracer.leave()

    builtins.__import__ = first_import
    gc.callbacks.append(collecting)
    sys.argv = [str(RUN_SCRIPT), *args]
    try:
        from nst_research import app, cli

        trace_functions(tracer, loaded_only=True)  # the command line's and the app's; the task's once loaded
        task_module = app.task_module

        def loading(name: str) -> Any:
            module = task_module(name)
            trace_functions(tracer, loaded_only=False)
            return module

        app.task_module = loading
        cli.main()
    finally:
        end = tracer.charge()
        gc.callbacks.remove(collecting)
        builtins.__import__ = importing
        Path(trace_path).write_text(json.dumps({"start": start, "end": end, "seconds": tracer.seconds,
                                                "calls": tracer.calls}))


def child_env() -> dict[str, str]:
    """The environment of the measured processes: W&B offline (what is measured), silent."""
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def timed(args: list[str], expected_status: int = 0) -> tuple[float, float, str]:
    """Start and end (`time.monotonic()`) and stdout of `python ARGS` in a fresh process, run in the repository."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=child_env(), capture_output=True, text=True)
    end = time.monotonic()
    if done.returncode != expected_status:
        raise RuntimeError(f"python {' '.join(args)} exited with {done.returncode}: {done.stderr[-2000:]}")
    return start, end, done.stdout


def plain_run(size: int, steps: int) -> dict[str, float]:
    """`scripts/run.py` at `size` for `steps` steps: its time to the first step, steps, after the last step."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start, end, _ = timed([str(RUN_SCRIPT), *run_overrides(size, steps, run_dir)])
        marks = json.loads((run_dir / "marks.json").read_text())
    first, last = marks["first_step_start"], marks["last_step_end"]
    return {"whole run": end - start, "to the first step": first - start, f"{steps} steps": last - first,
            "after the last step": end - last}


def traced_run(size: int, steps: int) -> dict[str, dict[str, tuple[float, int]]]:
    """The same run traced: {phase: {label: (seconds, calls)}} before the first step and after the last,
    Python's start-up and exit included."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, trace_path = Path(tmp) / "run", Path(tmp) / "trace.json"
        code = "from nst_research.bench.startup import traced_child; traced_child()"
        start, end, _ = timed(["-c", code, str(trace_path), *run_overrides(size, steps, run_dir)])
        trace = json.loads(trace_path.read_text())
    phases = {phase: {label: (seconds, trace["calls"][phase].get(label, 0))
                      for label, seconds in trace["seconds"][phase].items()} for phase in ("before", "after")}
    phases["before"] = {PYTHON_START: (trace["start"] - start, 1), **phases["before"]}
    phases["after"][PYTHON_EXIT] = (end - trace["end"], 1)
    return phases


def row(part: str, what: str, values: list[float], calls: int | None = None) -> dict[str, Any]:
    return {"part": part, "what": what, "calls": calls, "median_s": statistics.median(values),
            "min_s": min(values), "max_s": max(values)}


def run_section(quick: bool) -> list[dict[str, Any]]:
    """The section's rows: the commands, the run, and the traced run's phases (quick: 64 px, 2 steps, one round)."""
    rounds, size, steps = (1, 64, 2) if quick else (3, 256, 5)
    commands: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    traces = []
    for _ in range(rounds):
        for name, args in COMMANDS.items():
            start, end, _ = timed(args, EXPECTED_STATUS.get(name, 0))
            commands[name].append(end - start)
        start, _, imported = timed(["-c", LIGHTNING_CODE])
        commands[LIGHTNING_IMPORT].append(float(imported) - start)
        for what, seconds in plain_run(size, steps).items():
            runs[what].append(seconds)
        traces.append(traced_run(size, steps))
    rows = [row("command", name, times) for name, times in commands.items()]
    rows += [row(f"run {size}px", what, times) for what, times in runs.items()]
    beyond = [first - lightning for first, lightning in zip(runs["to the first step"], commands[LIGHTNING_IMPORT])]
    rows.append(row(f"run {size}px", "to the first step beyond import lightning.pytorch", beyond))
    order = [PYTHON_START, *IMPORTS.values(), *dict.fromkeys(label for _, _, label in TRACED), GC, OTHER, PYTHON_EXIT]
    for phase, part in (("before", "before first step"), ("after", "after last step")):
        for label in [label for label in order if any(label in trace[phase] for trace in traces)]:
            values = [trace[phase].get(label, (0.0, 0)) for trace in traces]
            calls = None if label in (OTHER, PYTHON_START, PYTHON_EXIT) else max(calls for _, calls in values)
            rows.append(row(part, label, [seconds for seconds, _ in values], calls))
        totals = [sum(seconds for seconds, _ in trace[phase].values()) for trace in traces]
        rows.append(row(part, "total (traced)", totals))
    return rows
