"""The Hydra entry point: compose the config, run the chosen task, report.

`cfg.task` names the task (`nst` by default, `gan`); each task module provides `run(cfg)`, which
builds its parts and runs them inside a `RunLifecycle` (run directory, loggers, status,
results.json) and returns its results; `summary(results)` (one console line) and `score(results)`
(the number a sweeper minimises, unless the config's `sweep_score` node names numbers of results.json
instead, as a multi-objective search does). A `UserInputError` becomes one line on stderr and exit status 2,
with nothing half-written left behind; a failure that is not the user's input (divergence, a crash)
exits 1, and a fault of the machine (a full disk, a read-only folder, a run directory another process is
writing: each run directory has one writer, `tracking.runlock`) is one line with exit 1. Only Hydra and
OmegaConf are imported before the command line is parsed: torch and Lightning load with the task.
"""

import atexit
import contextlib
import gc
import importlib
import importlib.util
import logging
import math
import re
import shutil
import signal
import sys
import warnings
from pathlib import Path
from types import ModuleType

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from nst_research.errors import RunDiverged, UserInputError, environment_fault, user_message
from nst_research.tracking.console import lightning_notices_to_log
from nst_research.tracking.runlock import LOCK_FILE, RunBusy, RunLock
from nst_research.tracking.sweep import ResultFields, sweep_job, with_sweep_job

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger(__name__)
TASKS = {"nst": "nst_research.nst.task", "gan": "nst_research.gan.task", "feedforward": "nst_research.feedforward.task"}
RESUME_GROUPS = ("logger", "trainer")  # config groups a resumed run may change: how it is logged and run
RESUME_EXAMPLES = {"nst": "iterations=400", "gan": "trainer.max_epochs=20", "feedforward": "trainer.max_steps=400"}
MISSING_KEY = object()
# Nodes a Lightning checkpoint restores whole (an optimizer's state carries its settings): a resume cannot change them.
RESTORED_ON_RESUME = {"gan": ("gan.optimizer",), "feedforward": ("optimizer",)}

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # the frozen VGG, by design
warnings.filterwarnings("ignore", ".*treespec.*")  # a Lightning deprecation notice, not ours
# A GAN run validates before fit and fits from scratch: Lightning's advice on ckpt_path does not apply.
warnings.filterwarnings("ignore", ".*fit\\(ckpt_path=.*")
# Lightning's notices (devices found, "fit stopped") are not news on each run: the console keeps the progress bar,
# our notices and the result line.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
# `${product:a,b}`: a searched setting as a multiple of another (nst_pareto's style weight of each style loss)
OmegaConf.register_new_resolver("product", lambda *factors: math.prod(factors), replace=True)


def task_module(name: str) -> ModuleType:
    """The module that runs task `name` (imported on demand: a GAN run never loads VGG code).

    Its first import (torch, Lightning, torchvision: about half a million objects that live as long as the
    process) runs without the garbage collector, which would otherwise pass over them again and again, and
    then freezes every object (`gc.freeze`): later passes, the interpreter's last one at exit included,
    skip them."""
    if name not in TASKS:
        raise UserInputError(f"unknown task={name}; choose one of: {', '.join(TASKS)}")
    if TASKS[name] in sys.modules:
        return sys.modules[TASKS[name]]
    collecting = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(TASKS[name])
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def check_before_loading(cfg: DictConfig) -> None:
    """The task's own light checks (`<task>/checks.py`, if it has one) before torch and Lightning load,
    so that bad input is answered at once."""
    checks = TASKS.get(cfg.task, "").rpartition(".")[0] + ".checks"
    if cfg.task in TASKS and importlib.util.find_spec(checks) is not None:
        importlib.import_module(checks).check(cfg)


def remove_unfinished_run_dir(output_dir: Path) -> None:
    """Remove what Hydra wrote into `output_dir` for this run (single runs only), and the directory
    if then empty: after bad input, and after a resume, which writes into the resumed directory."""
    hydra_cfg = HydraConfig.get()
    started = (output_dir / "results.json").exists() or any(output_dir.glob("*/results.json"))  # a run; a batch
    if hydra_cfg.mode != RunMode.RUN or started:
        return
    if hydra_cfg.output_subdir:
        shutil.rmtree(output_dir / hydra_cfg.output_subdir, ignore_errors=True)
    (output_dir / f"{hydra_cfg.job.name}.log").unlink(missing_ok=True)
    (output_dir / LOCK_FILE).unlink(missing_ok=True)
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


class NewRunFolders(Callback):
    """Hydra creates a run directory with the folders above it that are missing (outputs/runs/<date>/). When the
    command ends with those folders empty (bad input removed its run directory: `remove_unfinished_run_dir`),
    they go too; a folder that existed before the command is never removed."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        new = [folder for folder in Path(config.hydra.run.dir).absolute().parents if not folder.exists()]
        if new:
            atexit.register(remove_empty_folders, new)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of `folders` (innermost first) that is an empty folder."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty, or gone
            folder.rmdir()


def record_choices(cfg: DictConfig, choices: DictConfig) -> None:
    """Record which option of each config group the run uses (`choices.style_loss: mrf`), so that config.yaml
    and W&B's run table name them as the command line did; a resumed run keeps its own."""
    with open_dict(cfg):
        cfg.choices = {group.split("@")[0]: option for group, option in choices.items()
                       if option is not None and not group.startswith(("hydra/", "term@"))}


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved config of the run in `cfg.resume`, with this command's changes, writing into that run's
    directory: key=value changes to the run's own keys (e.g. iterations=400), and a new option of the `logger`
    or `trainer` group. `cfg` is this command's config, composed for the run's own task and options (see
    `nst_research.cli`): every value it derives from a changed key (`module.save_every: ${save_every}`) is
    derived again, so the change reaches what the run uses."""
    run_dir = Path(cfg.resume)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise UserInputError(f"resume={cfg.resume}: no config.yaml there; "
                             "give a run directory (outputs/runs/<date>/<time>)")
    resumed = relocated(OmegaConf.load(saved), run_dir)
    original = resumed.copy()
    own_choices = {"task": resumed.get("task"), **(resumed.get("choices") or {})}
    changes = []
    for override in overrides:
        key, _, value = override.partition("=")
        name = key.lstrip("+~")
        if key == "resume" or own_choices.get(key) == value:  # the run's own option, as the command line gives it
            continue
        if key in RESUME_GROUPS:  # the group's option as this task composes it
            node = hydra.compose(config_name="config", overrides=[f"task={resumed.task}", override])[key]
            resumed[key] = node
            if "choices" in resumed:
                resumed.choices[key] = value
        elif HydraConfig.get().runtime.choices.get(name) is not None or "/" in key or "@" in key:
            raise UserInputError(f"resume keeps the run's settings; {override} would change its {name}: "
                                 f"only {'=, '.join(RESUME_GROUPS)}= and key=value changes (e.g. iterations=400) "
                                 "may be given with resume=")
        elif key.startswith("~") or OmegaConf.select(resumed, name, default=MISSING_KEY) is MISSING_KEY:
            verb = "removes" if key.startswith("~") else "adds"
            raise UserInputError(f"resume changes the run's own settings; {override} {verb} {name}, which this "
                                 f"{resumed.task} run does not have: change the keys of its config.yaml, e.g. "
                                 f"{RESUME_EXAMPLES.get(resumed.task, 'iterations=400')}")
        else:
            changes.append(override.lstrip("+"))
    try:
        resumed = OmegaConf.merge(resumed, OmegaConf.from_dotlist(changes))
    except Exception as error:
        raise UserInputError(f"resume takes key=value changes to the saved config, e.g. iterations=400 "
                             f"({error})") from None
    rederive(resumed, cfg, {change.partition("=")[0] for change in changes})
    for node in RESTORED_ON_RESUME.get(resumed.task, ()):
        if OmegaConf.to_container(OmegaConf.select(resumed, node), resolve=True) != OmegaConf.to_container(
                OmegaConf.select(original, node)):
            raise UserInputError(f"resume continues the run's {node} from its checkpoint, settings included; "
                                 f"{' '.join(changes)} would change {node}, which the checkpoint overrides: start a "
                                 "new run to change it (steps, intervals, loss weights and logging may change)")
    resumed.resume, resumed.output_dir = str(run_dir), str(run_dir)
    return resumed


def interpolations(node: object, prefix: str = "") -> dict[str, str]:
    """Every value of a config (as plain containers, unresolved) that is an interpolation, by its dotted key."""
    found = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and "${" in value:
                found[f"{prefix}{key}"] = value
            else:
                found.update(interpolations(value, f"{prefix}{key}."))
    return found


def rederive(resumed: DictConfig, composed: DictConfig, changed: set[str]) -> None:
    """Give each key of `resumed` whose value `composed` derives from a changed key (directly or through other
    derived keys) its interpolation again, so that it follows the change."""
    derived = interpolations(OmegaConf.to_container(composed, resolve=False))
    pending = set(changed)
    while pending:
        key = pending.pop()
        for path, text in derived.items():
            uses = re.search(r"\$\{" + re.escape(key) + r"[}.\[]", text)
            if uses and path not in changed and OmegaConf.select(resumed, path, default=MISSING_KEY) is not MISSING_KEY:
                OmegaConf.update(resumed, path, text, force_add=False)
                changed.add(path)
                pending.add(path)


def relocated(saved: DictConfig, run_dir: Path) -> DictConfig:
    """A run's saved config with every path inside its run folder (`output_dir`, the loggers' `save_dir`, ...)
    moved into `run_dir`: a run folder that was copied or moved resumes inside itself, never in the original."""
    old = str(saved.get("output_dir") or "")

    def move(value: object) -> object:
        if isinstance(value, dict):
            return {key: move(item) for key, item in value.items()}
        if isinstance(value, list):
            return [move(item) for item in value]
        if isinstance(value, str) and old and (value == old or value.startswith(old.rstrip("/") + "/")):
            return str(run_dir) + value[len(old.rstrip("/")):]
        return value

    return OmegaConf.create(move(OmegaConf.to_container(saved)))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    """Run `cfg.task`; return its score (a final loss or metric) for sweepers that minimise it, or the numbers
    of results.json that the `sweep_score` node names (one per direction of a multi-objective search).

    In a multirun a failed job is recorded (results.json, W&B) and the sweep goes on: its
    score is +inf, the worst an Optuna trial can do; `MultirunSummary` counts failures.
    """
    hydra_cfg = HydraConfig.get()
    hydra_dir = Path(hydra_cfg.runtime.output_dir)
    record_choices(cfg, hydra_cfg.runtime.choices)
    job = sweep_job(hydra_cfg)
    if job is not None:
        with_sweep_job(cfg, job)
    score: ResultFields | None = None
    worst: float | list[float] = math.inf
    try:
        if cfg.get("sweep_score"):
            from nst_research.parts import build

            score = build(cfg.sweep_score)
            worst = score.worst()
        if cfg.get("resume"):
            cfg = resumed_config(cfg, list(hydra_cfg.overrides.task))
        check_before_loading(cfg)
        task = task_module(cfg.task)
        from nst_research.parts import check_targets

        check_targets(cfg)
        lightning_notices_to_log()
        with run_lock(Path(cfg.output_dir)):
            results = task.run(cfg)
    except (UserInputError, RunDiverged, RunBusy) as error:
        kept = kept_note(cfg) if isinstance(error, UserInputError) and job is None else ""
        print(f"error: {user_message(error)}{kept}", file=sys.stderr)
        if job is None:
            remove_unfinished_run_dir(hydra_dir)
            sys.exit(2 if isinstance(error, UserInputError) else 1)
        record_failed_job(cfg, user_message(error))
        return worst
    except SystemExit as stop:  # Ctrl-C (Lightning exits with 1) or SIGTERM (Lightning's SIGTERMException)
        hint = ("a batched sweep cannot be resumed" if cfg.get("batch_sweep") else
                f"continue it with python scripts/run.py resume={cfg.output_dir}")
        print(f"interrupted: the run so far is saved in {cfg.output_dir}; {hint}", file=sys.stderr)
        sys.exit(stop.code or 128 + signal.SIGTERM)
    except Exception as error:
        fault = environment_fault(error)
        if job is None and fault is None:
            raise
        if job is None:
            print(f"error: {fault}{kept_note(cfg)}", file=sys.stderr)
            remove_unfinished_run_dir(hydra_dir)
            sys.exit(1)
        log.exception("job %s failed", job["job"])  # the traceback goes to the job's log file
        print(f"error: job {job['job']} failed: {type(error).__name__}: {error}", file=sys.stderr)
        record_failed_job(cfg, f"{type(error).__name__}: {error}")
        return worst
    finally:
        if cfg.get("resume"):
            remove_unfinished_run_dir(hydra_dir)
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP every process returns here; one summary line
        line = f"result: {Path(cfg.output_dir) / results.result}  {task.summary(results)}"
        print(line)
        log.info(line)
    if score is None:
        return task.score(results)
    try:
        return score(results.to_dict())
    except UserInputError as error:  # the run is kept; as a trial it counts as the worst
        print(f"error: {error}", file=sys.stderr)
        return worst


def kept_note(cfg: DictConfig) -> str:
    """For a new run stopped by an error after it started (its results.json is written): how to continue it."""
    if cfg.get("resume") or not (Path(cfg.output_dir) / "results.json").is_file():
        return ""
    return f" (the run so far is kept: python scripts/run.py resume={cfg.output_dir} continues it)"


def run_lock(output_dir: Path) -> RunLock | contextlib.nullcontext:
    """The run directory's lock, taken by the process that writes its files (rank zero under DDP: the other
    processes write none)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return RunLock(output_dir) if rank_zero_only.rank == 0 else contextlib.nullcontext()


def record_failed_job(cfg: DictConfig, error: str) -> None:
    """Mark a multirun job failed in W&B and results.json when it failed before its run started (a run
    that started has recorded its own status and error)."""
    if (Path(cfg.output_dir) / "results.json").is_file():
        return
    from nst_research.tracking.lifecycle import record_failure

    loggers = {"wandb": cfg.logger.wandb} if "wandb" in (cfg.get("logger") or {}) else None
    record_failure(Path(cfg.output_dir), OmegaConf.to_container(cfg, resolve=True), loggers, cfg.task, error)
