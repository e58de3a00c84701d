"""Hydra's Ray launcher (`hydra/launcher=ray_local`: a local Ray instance that the launcher starts) leaves
the same sweep as the basic launcher: the same job directories and files, W&B runs, groups and names."""

import json
import re
from pathlib import Path

import pytest
import yaml
from test_sweeps import TINY, job_dirs

SWEEP = ["optimizer=lbfgs,adam", *TINY]

pytestmark = pytest.mark.slow  # a local Ray instance per sweep: run with pytest -m slow


def layout(sweep_dir: Path) -> list[str]:
    """Every path under `sweep_dir`, with W&B's run ids, media hashes and artifact staging names made generic."""
    paths = (re.sub(r"staging/tmp\w+", "staging/TMP", str(p.relative_to(sweep_dir))) for p in sweep_dir.rglob("*"))
    hashed = (re.sub(r"_[0-9a-f]{20}\.(png|table\.json)$", r"_HASH.\1", p) for p in paths)
    return sorted(re.sub(r"run-(\d{8}_\d{6}-)?[a-z0-9]{8}", "run-ID", p) for p in hashed)


def wandb_runs(sweep_dir: Path) -> list[dict[str, str]]:
    """Each job's W&B group and name, from its resolved config."""
    configs = [yaml.safe_load((job / "config.yaml").read_text()) for job in job_dirs(sweep_dir)]
    return [{"group": c["logger"]["wandb"]["group"], "name": c["logger"]["wandb"]["name"],
             "sweep_group": c["sweep"]["group"]} for c in configs]


@pytest.fixture(scope="module")
def sweeps(run_cli, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """The same 2-job sweep with the basic launcher and with Ray (one CPU: the jobs share one worker)."""
    root = tmp_path_factory.mktemp("launchers")
    launchers = {"basic": [], "ray": ["hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=1"]}
    out = {}
    for name, launcher in launchers.items():
        result = run_cli("-m", *launcher, *SWEEP, f"hydra.sweep.dir={root / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        out[name] = root / name, result.stdout + result.stderr
    return out


def test_ray_runs_the_jobs(sweeps):
    _, output = sweeps["ray"]
    assert "Ray Launcher is launching 2 jobs" in output and "Started a local Ray instance" in output
    assert "multirun: 2 jobs, 0 failed" in output


def test_ray_sweep_has_the_basic_layout(sweeps):
    (basic, _), (ray, _) = sweeps["basic"], sweeps["ray"]
    assert layout(ray) == layout(basic)
    assert {"0/results.json", "0/result.png", "0/config.yaml", "1/csv/metrics.csv", "multirun.yaml"} <= set(layout(ray))
    for job in job_dirs(ray):
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1  # one W&B run per job


def test_ray_jobs_are_grouped_and_named_like_basic_ones(sweeps):
    (basic, _), (ray, _) = sweeps["basic"], sweeps["ray"]
    runs = wandb_runs(ray)
    assert [run["name"] for run in runs] == [run["name"] for run in wandb_runs(basic)] == [
        "optimizer=lbfgs", "optimizer=adam"]
    assert {run["group"] for run in runs} == {runs[0]["sweep_group"]} == {f"{ray.parent.name}_{ray.name}"}
