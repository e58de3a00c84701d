"""Multiruns: one W&B run per job in one group, failed jobs counted, and the comparison report."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from judged_runs import style_weight_sweep
from omegaconf import OmegaConf
from PIL import Image

import nst_research.app  # noqa: F401  (registers the config's resolvers, as a run does)
from nst_research.errors import UserInputError
from nst_research.tracking.compare import Run, compare, find_runs, label_runs, run_color
from nst_research.tracking.sweep import ParetoSet

REPO = Path(__file__).resolve().parents[1]

TINY = ["image_size=32", "iterations=2", "save_every=10"]
SIX_RUN = ["image_size=64", "iterations=2", "save_every=10"]  # for the 3 x 2 sweep below, at 64 px


@pytest.fixture(scope="module")
def six_run_sweep(run_cli, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep") / "six"
    result = run_cli("-m", "style_weight=1e4,1e5,1e6", "optimizer=lbfgs,adam", *SIX_RUN,
                     f"hydra.sweep.dir={sweep_dir}", timeout=600)
    return sweep_dir, result


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def test_six_jobs_each_with_its_own_finished_wandb_run(six_run_sweep):
    sweep_dir, result = six_run_sweep
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 6
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
        offline_runs = list((job / "wandb").glob("offline-run-*"))
        assert len(offline_runs) == 1, job  # one W&B run per job, in its own directory
    assert "multirun: 6 jobs, 0 failed" in result.stdout
    (said,) = [line for line in result.stderr.splitlines() if line.startswith("W&B:")]  # once for the sweep
    assert f"wandb sync {sweep_dir}/*/wandb/offline-run-*" in said
    assert sorted(p.name for p in sweep_dir.iterdir() if not p.name.isdigit()) == ["multirun.yaml"]  # nothing left


def test_jobs_share_a_group_and_are_named_by_what_differs(six_run_sweep):
    sweep_dir, _ = six_run_sweep
    configs = [yaml.safe_load((job / "config.yaml").read_text()) for job in job_dirs(sweep_dir)]
    groups = {c["logger"]["wandb"]["group"] for c in configs}
    names = [c["logger"]["wandb"]["name"] for c in configs]
    assert len(groups) == 1 and groups.pop() == configs[0]["sweep"]["group"]
    assert len(set(names)) == 6
    assert "style_weight=10000.0,optimizer=lbfgs" in names  # Hydra writes the job's values in full
    assert all("image_size" not in name for name in names)  # fixed for the whole sweep, so not in the name
    assert configs[0]["sweep"]["overrides"] == ["style_weight=10000.0", "optimizer=lbfgs", *SIX_RUN]
    assert {c["logger"]["wandb"]["job_type"] for c in configs} == {"nst"}


def test_compare_writes_table_contact_sheet_and_curves(six_run_sweep, capsys):
    sweep_dir, _ = six_run_sweep
    table = compare(sweep_dir)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 6
    assert any("optimizer=adam,style_weight=100000.0" in row for row in rows)
    assert (sweep_dir / "comparison.md").read_text().count("| `") == 6
    with Image.open(sweep_dir / "contact_sheet.png") as sheet:
        assert sheet.width > 4 * 192 and sheet.height > 2 * 192  # 4 tiles per row, 2 rows
    with Image.open(sweep_dir / "curves.png") as plot:
        assert plot.width > 300


def test_failed_job_is_recorded_and_the_others_still_run(run_cli, tmp_path):
    sweep_dir = tmp_path / "with_failure"
    result = run_cli("-m", "content=missing.png,cat", *TINY, "logger=csv", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode != 0
    assert "multirun: 2 jobs, 1 failed" in result.stdout
    failed, completed = (json.loads((sweep_dir / job / "results.json").read_text()) for job in ("0", "1"))
    assert failed["status"] == "failed" and "missing.png" in failed["error"]
    assert completed["status"] == "completed"
    assert (sweep_dir / "1" / "result.png").is_file()
    assert re.search(r"^job 0 failed: image 'missing.png' not found", result.stderr, re.MULTILINE)


def test_single_run_directory_compares(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- optimizer=adam\n")
    (tmp_path / "results.json").write_text(json.dumps(
        {"status": "completed", "task": "nst", "steps": 5, "wall_time_s": 1.5, "final_losses": {"total": 12.5}}))
    table = compare(tmp_path)
    assert "| `optimizer=adam` | completed | - | 12.5 |" in table and "One run: nothing to rank." in table
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "curves.png").is_file()


def test_labels_name_only_the_overrides_that_differ():
    runs = [Run(Path(str(i)), {}, overrides) for i, overrides in enumerate(
        [["a=1", "b=2", "c=3"], ["a=1", "b=5", "c=3"], ["a=1", "b=5", "c=4"]])]
    label_runs(runs)
    assert [run.label for run in runs] == ["b=2,c=3", "b=5,c=3", "b=5,c=4"]


def test_compare_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="no results.json"):
        find_runs(tmp_path)


def test_compare_command_refuses_a_directory_without_runs_in_one_line_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "scripts/compare.py", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "no results.json" in line
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow  # run with pytest -m slow
def test_seeded_optuna_search_reports_its_best_parameters(run_cli, tmp_path):
    results = []
    for attempt in ("a", "b"):
        sweep_dir = tmp_path / attempt
        result = run_cli("-m", "hparams_search=nst_optuna", "hydra.sweeper.n_trials=4", *TINY, "logger=none",
                         f"hydra.sweep.dir={sweep_dir}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "multirun: 4 jobs, 0 failed" in result.stdout
        best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
        runs = [json.loads((job / "results.json").read_text()) for job in job_dirs(sweep_dir)]
        scores = [run["final_losses"]["total"] for run in runs]
        assert len(scores) == 4
        assert best["best_value"] == pytest.approx(min(scores), rel=1e-6)  # it minimised what the runs report
        assert set(best["best_params"]) == {"optimizer.lr", "init"}
        results.append(best)
    assert results[0] == results[1]  # seeded: the same trials and the same best


def compose_search(*overrides: str, output_dir: Path):
    """nst_pareto's config as a trial's job sees it: with Hydra's runtime choices set, for `${hydra:...}`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hparams_search=nst_pareto", *overrides,
                                                       f"output_dir={output_dir}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.parametrize("loss, reference", [("gram", 1e5), ("mean_std", 1e2), ("wasserstein", 1.0), ("mrf", 1.0)])
def test_pareto_search_weighs_each_style_loss_on_its_own_scale(tmp_path, loss, reference):
    """style_weight = style_weight_scale x the chosen loss's reference weight, whichever loss the trial drew."""
    cfg = compose_search(f"style_loss={loss}", "style_weight_scale=0.03", output_dir=tmp_path)
    try:
        weights = cfg.style_weight, cfg.objective.terms.style.weight
    finally:
        HydraConfig.instance().cfg = None  # as outside a run, for the tests that follow
    assert weights == pytest.approx((0.03 * reference, 0.03 * reference))
    sweeper = cfg.hydra.sweeper
    assert list(sweeper.direction) == ["minimize", "minimize"] and sweeper.sampler.seed == 0
    assert set(sweeper.params) == {"style_loss", "style_weight_scale", "layers", "content_weight"}
    assert sweeper.params.style_weight_scale.startswith("tag(log")
    assert cfg.hydra.callbacks.pareto.fields == ["eval.content", "eval.style"]


def test_pareto_search_returns_the_judges_two_numbers(compose_cfg):
    score = instantiate(compose_cfg(["hparams_search=nst_pareto"]).sweep_score)
    judged = {"status": "completed", "eval": {"content": 0.4, "style": 0.3, "score": 0.35}}
    assert score(judged) == [0.4, 0.3]
    assert score({"status": "failed"}) == [math.inf, math.inf] == score.worst()  # a failed trial: the worst
    with pytest.raises(UserInputError, match="eval.content"):
        score({"status": "completed", "final_losses": {"total": 1.0}})  # judge=none: said, not a silent inf
    assert compose_cfg([]).sweep_score is None  # every other run returns the task's own score


def test_pareto_set_written_and_drawn_at_the_end_of_a_search(tmp_path, capsys):
    style_weight_sweep(tmp_path)
    (tmp_path / "3").mkdir()  # a trial that wrote nothing
    ParetoSet(["eval.content", "eval.style"]).on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir":
                                                                                                   str(tmp_path)}}}))
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["trials"] == 3 and [t["job"] for t in pareto["front"]] == ["0", "1", "2"]
    assert pareto["front"][1] == {"job": "1", "overrides": ["style_weight=100000.0", "image_size=32"],
                                  "values": {"eval.content": 0.45, "eval.style": 0.4}}
    with Image.open(tmp_path / "tradeoff.png") as plot:
        colours = {"#%02x%02x%02x" % c for _, c in plot.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert {run_color(i) for i in range(3)} <= colours
    assert "Pareto set: 3 of 3 trials" in capsys.readouterr().out


def test_pareto_search_runs_and_writes_its_pareto_set(run_cli, tmp_path):
    """Three seeded trials of the shipped search, end to end: the judge's two numbers per trial to the sweeper, the
    sweeper's Pareto solutions, pareto.json and tradeoff.png."""
    sweep_dir = tmp_path / "pareto"
    result = run_cli("-m", "hparams_search=nst_pareto", "hydra.sweeper.n_trials=3", *TINY, "logger=none",
                     f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "multirun: 3 jobs, 0 failed" in result.stdout
    assert "setup plugin" not in result.stdout and "\x1b[" not in result.stdout + result.stderr  # alembic's, Optuna's
    runs = [json.loads((job / "results.json").read_text()) for job in job_dirs(sweep_dir)]
    points = [(r["eval"]["content"], r["eval"]["style"]) for r in runs]
    solutions = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["solutions"]
    pareto = json.loads((sweep_dir / "pareto.json").read_text())
    front = sorted(tuple(t["values"].values()) for t in pareto["front"])
    assert front == sorted(tuple(s["values"]) for s in solutions)  # the sweeper's own front, from the same numbers
    assert front and set(front) <= set(points)
    assert {"style_loss", "style_weight_scale", "layers", "content_weight"} == set(solutions[0]["params"])
    assert (sweep_dir / "tradeoff.png").is_file()


def test_joblib_launcher_runs_two_jobs_in_parallel_with_the_same_layout(run_cli, tmp_path):
    sweep_dir = tmp_path / "joblib"
    result = run_cli("-m", "hydra/launcher=local_parallel", "optimizer=lbfgs,adam", *TINY, "logger=csv",
                     f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    for job in job_dirs(sweep_dir):
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
        assert (job / "result.png").is_file() and (job / "csv" / "metrics.csv").is_file()
    assert len(job_dirs(sweep_dir)) == 2


def test_slurm_launcher_preset_composes(run_cli):
    result = run_cli("hydra/launcher=slurm", "--cfg", "hydra", "--package", "hydra.launcher")
    assert result.returncode == 0, result.stderr
    launcher = yaml.safe_load(result.stdout)  # the hydra.launcher package alone
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["gpus_per_node"] == 1


def test_contact_sheet_labels_break_between_settings_not_inside_numbers():
    from nst_research.tracking.compare import label_lines

    assert label_lines("optimizer=adam,style_weight=10000.0") == ["optimizer=adam,", "style_weight=10000.0"]
    assert label_lines("a=1,b=2") == ["a=1,b=2"]
    three = label_lines("optimizer=adam,style_weight=10000.0,content_weight=1.0")
    assert len(three) == 2 and three[-1].endswith("...")
    assert all(len(line) <= 30 for line in three)


def test_a_setting_too_long_for_a_label_line_keeps_its_value():
    from nst_research.tracking.compare import label_lines

    assert label_lines("gan.discriminator.spectral_norm=true,seed=0") == ["spectral_norm=true,seed=0"]
    assert label_lines("model.a_very_long_component_name_indeed=0.125", width=20) == ["...name_indeed=0.125"]
