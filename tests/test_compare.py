"""compare.py's ranking rule, the Pareto front and the trade-off plot, on run directories written as real runs
lay them out (judged_runs.write_run)."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from judged_runs import day_of_runs, style_weight_sweep, write_config, write_run
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.tracking.compare import compare, find_runs, pareto_front, ranking, run_color, tradeoff_curves
from nst_research.tracking.runlock import RunLock

REPO = Path(__file__).resolve().parents[1]


def run_compare(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, directory: Path) -> str:
    """`python scripts/compare.py DIRECTORY` in this process: what it prints (it must succeed)."""
    monkeypatch.setattr(sys, "argv", ["compare.py", str(directory)])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / "scripts" / "compare.py"), run_name="__main__")
    assert exited.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def rows(markdown: str) -> dict[str, list[str]]:
    """{run label: its cells} of compare's table."""
    lines = [line for line in markdown.splitlines() if line.startswith("| `")]
    return {line.split("`")[1]: [cell.strip() for cell in line.split("|")[2:-1]] for line in lines}


def test_runs_with_different_objectives_are_ranked_by_the_judge(tmp_path):
    markdown = compare(style_weight_sweep(tmp_path))
    table = rows(markdown)
    header = [cell.strip() for cell in markdown.splitlines()[0].split("|")[2:-1]]
    score, total, rank = header.index("eval score"), header.index("total loss"), header.index("rank")
    assert table["style_weight=100000.0"][score] == "**0.6021** ★"  # the judge's best, not the smallest total
    assert "★" not in table["style_weight=10000.0"][total] and table["style_weight=10000.0"][rank] == "3"
    assert [table[k][rank] for k in table] == ["3", "1", "2"]
    assert "judge's score" in markdown and "objectives differ (objective.terms.style.weight)" in markdown


def test_runs_of_one_objective_are_ranked_by_total_loss(tmp_path):
    for job, (optimizer, total, point) in enumerate([("torch.optim.LBFGS", 57.4, (0.5, 0.3)),
                                                     ("torch.optim.Adam", 80.0, (0.4, 0.2))]):
        write_run(tmp_path / str(job), [f"optimizer={optimizer.rsplit('.', 1)[1].lower()}"], total, point,
                  optimizer=optimizer)
    markdown = compare(tmp_path)
    table = rows(markdown)
    header = [cell.strip() for cell in markdown.splitlines()[0].split("|")[2:-1]]
    assert table["optimizer=lbfgs"][header.index("total loss")] == "**57.4** ★"
    assert "★" not in table["optimizer=adam"][header.index("eval score")]  # the judge prefers adam; not the ranking
    assert "Ranked by total loss" in markdown and "same objective" in markdown


def test_different_objectives_without_a_judge_are_not_ranked(tmp_path):
    markdown = compare(style_weight_sweep(tmp_path, judged=False))
    assert "★" not in markdown and "Not ranked" in markdown and "judge=none" in markdown
    assert not (tmp_path / "tradeoff.png").exists() and "tradeoff.png" not in (tmp_path / "comparison.md").read_text()


def test_a_run_without_config_yaml_counts_as_a_different_objective(tmp_path):
    style_weight_sweep(tmp_path)
    (tmp_path / "0" / "config.yaml").unlink()
    rank_by = ranking(find_runs(tmp_path))
    assert rank_by.column == "eval score" and "no config.yaml" in rank_by.reason


@pytest.mark.parametrize("points, front", [
    ([(1, 5), (2, 2), (5, 1), (3, 3), (2, 6)], [0, 1, 2]),  # (3, 3) is beaten by (2, 2); (2, 6) by (1, 5)
    ([(1, 1), (1, 1), (2, 2)], [0, 1]),  # equal points are both on the front
    ([(1, 2), (1, 3)], [0]),  # as good on one axis and better on the other beats
    ([(4, 4)], [0]),
    ([], []),
    ([(1, 2, 3), (2, 1, 3), (2, 2, 4)], [0, 1]),  # any number of axes
])
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def test_tradeoff_plot_draws_every_judged_run_in_its_colour(tmp_path):
    style_weight_sweep(tmp_path)
    write_run(tmp_path / "3", ["style_weight=1e7", "image_size=32"], 500.0, None, style_weight=1e7)  # not judged
    compare(tmp_path)
    assert "![trade-off" in (tmp_path / "comparison.md").read_text()
    with Image.open(tmp_path / "tradeoff.png") as plot:
        colours = {colour for _, colour in plot.convert("RGB").getcolors(maxcolors=1 << 20)}
    hexes = {"#%02x%02x%02x" % colour for colour in colours}
    assert {run_color(i) for i in range(3)} <= hexes  # each judged run's marker, in its colour
    assert run_color(3) not in hexes


def test_failed_run_is_left_out_of_the_ranking_and_the_front(tmp_path):
    style_weight_sweep(tmp_path)
    write_run(tmp_path / "3", ["style_weight=1e7", "image_size=32"], 1.0, (0.01, 0.01), style_weight=1e7,
              status="failed")
    table = rows(compare(tmp_path))
    assert table["style_weight=1e7"][1] == "-" and table["style_weight=1e7"][-3] == "-"  # rank, Pareto
    assert table["style_weight=100000.0"][1] == "1" and table["style_weight=100000.0"][-3] == "yes"


def test_compare_command_says_what_it_ranks_by(tmp_path):
    style_weight_sweep(tmp_path)
    done = subprocess.run([sys.executable, "scripts/compare.py", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Ranked by the judge's score" in done.stdout and str(tmp_path / "tradeoff.png") in done.stdout


def test_gan_runs_are_ranked_by_the_frechet_distance_without_a_tradeoff(tmp_path):
    """A GAN's Frechet distance is one metric for every run, whatever its loss or network; no judge, no plane."""
    for job, (gan, distance) in enumerate([("fc", 80.0), ("dcgan", 42.3)]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- task=gan\n- gan={gan}\n")
        (tmp_path / str(job) / "results.json").write_text(json.dumps(
            {"status": "completed", "task": "gan", "frechet_distance": {"final": distance, "floor": 5.0}}))
    markdown = compare(tmp_path)
    assert "| `gan=dcgan` | completed | 1 | **42.3** ★ |" in markdown and "Pareto" not in markdown
    assert "Frechet distance" in markdown.splitlines()[-1] and not (tmp_path / "tradeoff.png").exists()


def test_a_conditional_gans_class_accuracy_is_a_column_only_where_a_run_has_one(tmp_path):
    def gan_run(job: int, overrides: str, final: dict) -> None:
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- task=gan\n- {overrides}\n")
        (tmp_path / str(job) / "results.json").write_text(json.dumps(
            {"status": "completed", "task": "gan", "frechet_distance": {"final": 50.0 + job, "floor": 5.0},
             "sample_metrics": {"final": {"precision": 0.7, "recall": 0.4, **final}}}))

    gan_run(0, "gan.conditional=false", {})
    assert "class accuracy" not in compare(tmp_path)  # no empty column for unconditional runs
    gan_run(1, "gan.conditional=true", {"class_accuracy": 0.504})
    table = compare(tmp_path).splitlines()
    header = next(line for line in table if "Frechet distance" in line and line.startswith("|"))
    assert "class accuracy" in header and any("0.504" in line for line in table if "conditional=true" in line)


def test_tradeoff_curves_draw_a_line_per_setting_and_refuse_unknown_keys(tmp_path):
    for job, (loss, scale, point) in enumerate([("gram", "1", (0.3, 0.8)), ("gram", "10", (0.6, 0.5)),
                                                 ("mrf", "1", (0.2, 0.9)), ("mrf", "10", (0.5, 0.4))]):
        write_run(tmp_path / str(job), [f"style_loss={loss}", f"style_weight_scale={scale}"], 1.0, point)
    runs = find_runs(tmp_path)
    tradeoff_curves(runs, "style_loss", "style_weight_scale", None, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as plot:
        colours = {"#%02x%02x%02x" % c for _, c in plot.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert {run_color(0), run_color(1)} <= colours  # one line per style loss, each in its colour
    with pytest.raises(UserInputError, match="style_weight"):
        tradeoff_curves(runs, "style_weight", "style_weight_scale", None, tmp_path / "other.png")


def test_a_day_of_unrelated_runs_is_a_folder_with_a_section_per_task(tmp_path, monkeypatch, capsys):
    """outputs/runs/<date>: said to be a folder, not a sweep; each task's runs in their own table, ranked by its own
    rule, with their own pictures; the batched sweep's elements (two folders down) are runs, not a skipped job."""
    day = day_of_runs(tmp_path / "2026-12-05")
    out = run_compare(monkeypatch, capsys, day)
    assert out.splitlines()[0] == (f"folder of 5 runs (not one sweep): 3 style transfer, 1 GAN, 1 feed-forward: {day}")
    assert "skipped" not in out
    sections = {part.split(":")[0]: part for part in out.split("## ")[1:]}
    assert list(sections) == ["style transfer", "GAN", "feed-forward"]
    assert set(rows(sections["style transfer"])) == {"iterations=4,optimizer=adam", "style_weight=10000.0",
                                                     "style_weight=1000000.0"}
    assert list(rows(sections["GAN"])) == ["gan=dcgan,task=gan"] and "Frechet distance" in sections["GAN"]
    assert "Frechet distance" not in sections["style transfer"]
    for task in ("nst", "gan", "feedforward"):
        assert (day / f"curves_{task}.png").is_file() and (day / f"contact_sheet_{task}.png").is_file()
    assert "folder of 5 runs (not one sweep)" in (day / "comparison.md").read_text()


def test_a_run_two_folders_down_is_found(tmp_path):
    write_run(tmp_path / "pics" / "styles" / "10-15-00", ["optimizer=adam"], 12.5, None)
    assert "| `optimizer=adam` | completed |" in compare(tmp_path / "pics")


def test_a_batched_sweep_and_a_run_say_what_they_are(tmp_path, monkeypatch, capsys):
    day = day_of_runs(tmp_path)
    assert run_compare(monkeypatch, capsys, day / "10-05-00").splitlines()[0] == f"sweep of 2 runs: {day / '10-05-00'}"
    assert run_compare(monkeypatch, capsys, day / "10-10-00").splitlines()[0] == f"one run: {day / '10-10-00'}"


def test_a_resumed_run_is_labelled_by_the_values_it_ran_with(tmp_path):
    """`resume=<dir> iterations=60` rewrites the run's config.yaml; its .hydra/overrides.yaml keeps the first
    command's iterations=2000."""
    for job, optimizer in enumerate(["adam", "lbfgs"]):
        write_run(tmp_path / str(job), ["iterations=2000", f"optimizer={optimizer}"], 10.0, None)
        write_config(tmp_path / str(job), iterations=2000, choices={"optimizer": optimizer})
    write_config(tmp_path / "0", iterations=60)
    assert set(rows(compare(tmp_path))) == {"iterations=60,optimizer=adam", "iterations=2000,optimizer=lbfgs"}


def test_running_jobs_are_listed_as_running(tmp_path, monkeypatch, capsys):
    """A job being written now (its lock held: a new job, or a resumed one over its old results.json) is a row marked
    running; a job that started and stopped without results.json is named as skipped."""
    style_weight_sweep(tmp_path)
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    running, stopped = tmp_path / "3", tmp_path / "4"
    for job in (running, stopped):
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text("- style_weight=1e7\n- image_size=32\n")
        (job / "config.yaml").write_text("task: nst\n")
    with RunLock(running), RunLock(tmp_path / "0"):
        out = run_compare(monkeypatch, capsys, tmp_path)
    assert out.splitlines()[0] == f"sweep of 4 runs, 2 running: {tmp_path}"
    assert out.splitlines()[1] == f"skipped {stopped}: no results.json (the job did not finish)"
    table = rows(out)
    assert table["style_weight=1e7"][0] == "running" and table["style_weight=10000.0"][0] == "running"
    assert table["style_weight=100000.0"][:2] == ["completed", "1"]
