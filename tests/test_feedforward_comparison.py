"""scripts/feedforward_vs_optimization.py: a trained network against L-BFGS under the same objective, on a tiny
run (32 px, shallow layers, a few steps)."""

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from nst_research.feedforward.checkpoint import load_network
from nst_research.feedforward.comparison import build_run_judge, main
from nst_research.feedforward.task import load_styles
from nst_research.feedforward.task import run as run_feedforward
from nst_research.nst.images import load_image
from nst_research.tracking.compare import TILE

# +callbacks=history keeps the network of each validation (steps 2 and 4) for the judge's plane
TINY = ["task=feedforward", "image_size=32", "layers=shallow", "network.width=4", "network.blocks=1",
        "photos.batch_size=2", "optimizer.lr=3e-3", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "+callbacks=history", "logger=none"]
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


@pytest.fixture(scope="module")
def plane(comparison):
    out = comparison[0].parent / "plane"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(out.parent / "run"), "--plane", "--steps", *map(str, STEPS), "--out", str(out)]) == 0
    return out, stdout.getvalue()


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


def test_plane_judges_every_kept_network_against_its_photo(comparison, plane):
    """A point per kept checkpoint (history, by step), the photos at content 0 and style 1, L-BFGS at each count; each
    point's numbers are the judge's for each held-out image against its own photo and the run's style, averaged, and
    its loss is the run's own objective (the photos' loss is the comparison's `content (start)`)."""
    out, stdout = plane
    run_dir = out.parent / "run"
    report = json.loads((out / "plane.json").read_text())
    assert [p["step"] for p in report["network"]] == [2, 4] and [p["step"] for p in report["lbfgs"]] == STEPS
    assert report["photo"]["content"] == pytest.approx(0, abs=1e-6)
    assert report["photo"]["style"] == pytest.approx(1, abs=1e-6)
    assert report["photo"]["content_ssim"] == pytest.approx(1, abs=1e-4)
    rows = json.loads((comparison[0] / "comparison.json").read_text())["images"]
    assert report["photo"]["loss"] == pytest.approx(sum(row["content_loss"] for row in rows) / 2, rel=1e-4)
    assert report["lbfgs"][-1]["loss"] < report["photo"]["loss"]

    cfg = OmegaConf.load(run_dir / "config.yaml")
    judge, (_, styles, blend) = build_run_judge(cfg), load_styles(cfg)
    network = load_network(run_dir / "checkpoints" / "history" / "step_000002.ckpt")
    expected = []
    for name in report["images"]:
        photo = load_image(str(out / "content" / f"{name}.png"))
        with torch.no_grad():
            expected.append(judge(network(photo), photo, styles, blend))
    for key in ("content", "style", "content_ssim"):
        assert report["network"][0][key] == pytest.approx(sum(e[key] for e in expected) / 2, rel=1e-5)
    assert (out / "plane.md").read_text() in stdout
    assert Image.open(out / "plane.png").size == (650, 500)


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
