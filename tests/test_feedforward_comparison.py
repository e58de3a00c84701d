"""scripts/feedforward_vs_optimization.py: a trained network against L-BFGS under the same objective, on a tiny
run (32 px, shallow layers, a few steps)."""

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from nst_research.feedforward.comparison import main
from nst_research.feedforward.task import run as run_feedforward
from nst_research.tracking.compare import TILE

TINY = ["task=feedforward", "image_size=32", "layers=shallow", "network.width=4", "network.blocks=1",
        "photos.batch_size=2", "optimizer.lr=3e-3", "trainer.max_steps=4", "logger=none"]
STEPS = [2, 4]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def comparison(compose_at, tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison")
    run_feedforward(compose_at(TINY, root / "run"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(root / "run"), "--steps", *map(str, STEPS), "--out", str(root / "out")]) == 0
    return root / "out", stdout.getvalue()


def test_both_methods_are_scored_by_the_same_objective(comparison):
    """The L-BFGS run starts from the content image: its initial loss is the content's loss under the feed-forward
    run's objective, computed separately; so the two methods' numbers are on one scale."""
    out, _ = comparison
    report = json.loads((out / "comparison.json").read_text())
    assert [row["image"] for row in report["images"]] == ["chelsea", "astronaut"]
    for row in report["images"]:
        optimised = json.loads((out / "optimization" / row["image"] / "results.json").read_text())
        assert optimised["initial_losses"]["total"] == pytest.approx(row["content_loss"], rel=1e-4)
        assert optimised["steps"] == max(STEPS) and optimised["image_size"] == [32, 32]
        assert row["lbfgs"][str(max(STEPS))]["total"] == optimised["final_losses"]["total"]
        assert row["lbfgs"]["4"]["total"] < row["content_loss"]
        logged = {line["step"]: line["loss/total"] for line in metrics(out / "optimization" / row["image"])}
        assert row["lbfgs"]["2"]["total"] == pytest.approx(float(logged["3"]))  # logged at step 3: after 2 steps
        assert set(row["network"]["losses"]) >= {"total", "content", "style", "tv"}
        assert row["network"]["seconds"] > 0 and row["lbfgs"]["4"]["seconds"] > row["lbfgs"]["2"]["seconds"] > 0


def test_both_methods_are_judged_on_the_same_yardstick(comparison):
    """The judge of the L-BFGS runs themselves gives their final image the same numbers (up to its 8-bit PNG)."""
    out, _ = comparison
    report = json.loads((out / "comparison.json").read_text())
    assert report["judge"]["name"] == "vgg19_sliced_wasserstein"
    for row in report["images"]:
        optimised = json.loads((out / "optimization" / row["image"] / "results.json").read_text())
        last = row["lbfgs"][str(max(STEPS))]["eval"]
        for key in ("content", "style"):
            assert last[key] == pytest.approx(optimised["eval"][key], rel=0.02, abs=1e-3), key
        assert {"content", "style", "score"} <= set(row["network"]["eval"])
        assert row["lbfgs"]["2"]["eval"] != last  # each step count's own image


def test_table_and_contact_sheet(comparison):
    out, stdout = comparison
    table = (out / "comparison.md").read_text()
    assert table in stdout
    lines = table.splitlines()
    assert lines[0] == ("| image | content (start) | network | L-BFGS 2 | L-BFGS 4 | network (s) | L-BFGS 4 (s) "
                        "| time ratio | network eval/content | network eval/style | L-BFGS 2 eval/content "
                        "| L-BFGS 2 eval/style | L-BFGS 4 eval/content | L-BFGS 4 eval/style |")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| chelsea", "| astronaut", "| mean"]
    sheet = Image.open(out / "contact_sheet.png")
    columns, rows = 2 + len(STEPS), 2  # content, network, L-BFGS at each count; one row per image
    assert sheet.size == (columns * (TILE + 4) + 4, rows * (TILE + 28 + 4) + 4)


@pytest.mark.parametrize("config, message", [
    (None, "has no config.yaml; give a feed-forward run directory"),
    ("task: nst\n", "is a task=nst run; give a feed-forward run directory"),
])
def test_a_directory_that_is_not_a_feedforward_run_is_one_error(tmp_path, capsys, config, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if config is not None:
        (run_dir / "config.yaml").write_text(config)
    assert main([str(run_dir), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "out").exists()
