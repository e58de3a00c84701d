"""The Hydra entry point: compose the config, run the chosen task, report.

`cfg.task` names the task (`nst` by default, `gan`); each task module provides `run(cfg)`,
which writes the run directory and returns its results, `summary(results)` (one console
line) and `score(results)` (the number a sweeper minimises). A `UserInputError` becomes one
line on stderr and exit status 2, with nothing half-written left behind.
"""

import importlib
import json
import logging
import math
import shutil
import signal
import sys
import warnings
from pathlib import Path
from types import ModuleType

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

from nst_research.errors import RunDiverged, UserInputError
from nst_research.tracking.loggers import finish_loggers, instantiate_loggers
from nst_research.tracking.results import write_results
from nst_research.tracking.sweep import sweep_job, with_sweep_job

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger(__name__)
TASKS = {"nst": "nst_research.nst.run", "gan": "nst_research.gan.run"}

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # the frozen VGG, by design
warnings.filterwarnings("ignore", ".*treespec.*")  # a Lightning deprecation notice, not ours
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())


def task_module(name: str) -> ModuleType:
    """The module that runs task `name` (imported on demand: a GAN run never loads VGG code)."""
    if name not in TASKS:
        raise UserInputError(f"unknown task={name}; choose one of: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])


def check_one_device(cfg: DictConfig) -> None:
    """Style transfer optimises one image on one device: refuse a multi-device or multi-process trainer."""
    trainer = cfg.get("trainer") or {}
    strategy, devices, nodes = trainer.get("strategy", "auto"), trainer.get("devices", 1), trainer.get("num_nodes", 1)
    one_device = devices in (1, "1") or (isinstance(devices, ListConfig) and len(devices) == 1)
    if strategy != "auto" or not one_device or nodes != 1:
        raise UserInputError(f"task=nst optimises one image on one device, but the trainer asks for strategy={strategy} "
                             f"devices={devices} num_nodes={nodes}; use trainer=default, cpu, gpu or mps")


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
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved config of the run in `cfg.resume`, with this command's key=value changes
    (e.g. iterations=400), writing into that run's directory."""
    run_dir = Path(cfg.resume)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise UserInputError(f"resume={cfg.resume}: no config.yaml there; give a run directory (outputs/runs/<date>/<time>)")
    changes = [o for o in overrides if not o.startswith("resume=")]
    try:
        resumed = OmegaConf.merge(OmegaConf.load(saved), OmegaConf.from_dotlist(changes))
    except Exception as error:
        raise UserInputError(f"resume takes key=value changes to the saved config, e.g. iterations=400 ({error})") from None
    resumed.resume, resumed.output_dir = str(run_dir), str(run_dir)
    return resumed


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Run `cfg.task`; return its score (a final loss or metric) for sweepers that minimise it.

    In a multirun a failed job is recorded (results.json, W&B) and the sweep goes on: its
    score is +inf, the worst an Optuna trial can do; `MultirunSummary` counts failures.
    """
    hydra_cfg = HydraConfig.get()
    hydra_dir = Path(hydra_cfg.runtime.output_dir)
    job = sweep_job(hydra_cfg)
    if job is not None:
        with_sweep_job(cfg, job)
    try:
        if cfg.get("resume"):
            cfg = resumed_config(cfg, list(hydra_cfg.overrides.task))
        task = task_module(cfg.task)
        if cfg.task == "nst":
            check_one_device(cfg)
        results = task.run(cfg)
    except (UserInputError, RunDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        if job is None:
            remove_unfinished_run_dir(hydra_dir)
            sys.exit(2 if isinstance(error, UserInputError) else 1)
        record_failed_job(cfg, str(error))
        return math.inf
    except SystemExit as stop:  # Ctrl-C (Lightning exits with 1) or SIGTERM (Lightning's SIGTERMException)
        hint = ("a batched sweep cannot be resumed" if cfg.get("batch_sweep") else
                f"continue it with python scripts/run.py resume={cfg.output_dir}")
        print(f"interrupted: the run so far is saved in {cfg.output_dir}; {hint}", file=sys.stderr)
        sys.exit(stop.code or 128 + signal.SIGTERM)
    except Exception as error:
        if job is None:
            raise
        log.exception("job %s failed", job["job"])  # the traceback goes to the job's log file
        print(f"error: job {job['job']} failed: {type(error).__name__}: {error}", file=sys.stderr)
        record_failed_job(cfg, f"{type(error).__name__}: {error}")
        return math.inf
    finally:
        if cfg.get("resume"):
            remove_unfinished_run_dir(hydra_dir)
    if rank_zero_only.rank == 0:  # under DDP every process returns here; one summary line
        print(f"result: {Path(cfg.output_dir) / results['result']}  {task.summary(results)}")
    return task.score(results)


def record_failed_job(cfg: DictConfig, error: str) -> None:
    """Mark a multirun job failed in its directory (results.json) and, for bad input, in W&B too."""
    output_dir = Path(cfg.output_dir)
    path = output_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"status": "failed", "task": cfg.task}
    status = results["status"] if results["status"] not in ("completed", "interrupted") else "failed"
    if not path.is_file():  # it failed before it started: no W&B run yet, so open one to mark it failed
        loggers = instantiate_loggers({"wandb": cfg.logger.wandb} if "wandb" in (cfg.get("logger") or {}) else None)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        finish_loggers(loggers, "failed")
    write_results(path, {**results, "status": status, "error": error})
