"""scripts/judge.py: any image or run judged from the command line; bad input is one line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nst_research.judge.command import main
from nst_research.nst.images import load_image, save_image
from nst_research.nst.task import run as run_nst_task

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "judge.py"


def judge_json(capsys, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_content_image_scores_content_zero_from_the_command_line():
    done = subprocess.run([sys.executable, str(SCRIPT), "cat", "--content", "cat", "--style", "coffee", "--size", "64",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [record] = json.loads(done.stdout)["images"]
    assert record["content"] == pytest.approx(0, abs=1e-6) and record["content_ssim"] == pytest.approx(1, abs=1e-6)
    assert record["style"] == pytest.approx(1, abs=1e-6)


def test_a_run_directory_is_judged_against_its_own_inputs_as_the_run_was(compose_cfg, tmp_path, capsys):
    run_dir = tmp_path / "run"
    results = run_nst_task(compose_cfg(["image_size=48", "iterations=3", "logger=none"], run_dir))
    capsys.readouterr()  # the run's progress bar
    [record] = judge_json(capsys, str(run_dir))["images"]
    # the run judged its image as result.png holds it, against the same inputs: the same numbers
    assert {key: record[key] for key in results.eval if key != "judge"} == {
        key: value for key, value in results.eval.items() if key != "judge"}
    table_out = main([str(run_dir), str(run_dir / "content.png"), "--content", str(run_dir / "content.png"),
                      "--style", "coffee"])
    assert table_out == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 4 and rows[3].startswith(f"| {run_dir / 'content.png'} | 0.0000 |")


def test_an_image_of_another_size_and_aspect_is_judged(tmp_path, capsys):
    made = tmp_path / "made_elsewhere.png"
    save_image(load_image("cat", 80)[..., 5:-5, :], made)  # cropped: another aspect than the content
    with Image.open(made) as image:
        assert image.size != (80, 53)
    [record] = judge_json(capsys, str(made), "--content", "cat", "--style", "coffee", "--style", "hubble",
                          "--blend", "0.7", "0.3")["images"]
    assert 0 < record["content"] < 0.5 and record["style"] > 0.5


@pytest.mark.parametrize("args, named", [
    (["/nonexistent/result.png", "--content", "cat", "--style", "coffee"], "/nonexistent/result.png"),
    ([str(SCRIPT), "--content", "cat", "--style", "coffee"], "cannot read image"),
    (["cat"], "no content"),
    (["cat", "--content", "cat"], "--style"),
    (["cat", "--content", "cat", "--style", "coffee", "--blend", "1", "2"], "for 1 style image"),
    (["cat", "--content", "cat", "--style", "coffee", "--judge", "none"], "--judge none"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, named, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: ") and named in line


def test_bad_input_from_the_command_line_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {tmp_path} is a directory without result.png; give an image, or a "
                                        "style-transfer run directory"]
