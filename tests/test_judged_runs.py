"""Every style-transfer run is judged: results.json's `eval` block, the `eval/*` metrics, and numbers that do not
depend on the run's objective."""

import csv
import json
import math

import pytest
import torch

from nst_research.judge.judge import FeatureJudge
from nst_research.nst.task import build_judge, input_loader
from nst_research.nst.task import run as run_nst_task

SCORE_KEYS = {"content", "style", "score", "color", "content_ssim", "content_raw", "style_raw", "color_raw"}


def csv_rows(run_dir):
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory, compose_at):
    """A tiny finished run on two scales (45 then 64 px)."""
    run_dir = tmp_path_factory.mktemp("judged")
    cfg = compose_at(["image_size=64", "multiscale.min_size=45", "iterations=5", "logger=csv"], run_dir)
    return cfg, run_dir, run_nst_task(cfg)


def test_results_json_holds_the_judges_numbers_for_the_result_and_each_scale(judged_run):
    cfg, run_dir, results = judged_run
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["eval"]["judge"] == build_judge(cfg).settings()
    assert set(saved["eval"]) == SCORE_KEYS | {"judge"}
    assert saved["eval"]["score"] == pytest.approx(math.hypot(saved["eval"]["content"], saved["eval"]["style"]))
    assert [set(scale["eval"]) for scale in saved["scales"]] == [SCORE_KEYS, SCORE_KEYS]
    assert {k: v for k, v in saved["eval"].items() if k != "judge"} == saved["scales"][-1]["eval"]
    assert saved["scales"][0]["eval"] != saved["scales"][1]["eval"]  # each scale's own end image
    assert {"eval/content", "eval/style", "eval/score"} <= set(results.headline())


def test_the_judges_numbers_are_logged_at_the_end_and_at_each_scale(judged_run):
    _, run_dir, results = judged_run
    rows = csv_rows(run_dir)
    final = [row for row in rows if row.get("eval/content")]
    assert len(final) == 1 and int(final[0]["step"]) == results.steps
    for key, value in results.eval.items():
        if key != "judge":
            assert float(final[0][f"eval/{key}"]) == pytest.approx(value, rel=1e-6), key
    for scale in results.scales:
        logged = [row for row in rows if row.get(f"scale/{max(scale.image_size)}px/eval/style")]
        assert len(logged) == 1
        assert float(logged[0][f"scale/{max(scale.image_size)}px/eval/style"]) == pytest.approx(scale.eval["style"])


def test_noise_scores_worse_than_a_finished_run_on_both_axes(compose_at, tmp_path):
    """The default run at 64 px after 15 steps. (Two scales at this size paint over the content so much that its
    feature distance passes noise's, whose deep features are weak: a limit of the content distance.)"""
    cfg = compose_at(["image_size=64", "iterations=15", "logger=none"], tmp_path)
    judged = run_nst_task(cfg).eval
    judge: FeatureJudge = build_judge(cfg)
    inputs = input_loader(cfg)(cfg.image_size)
    noise = judge.score(torch.rand(inputs.content.shape, generator=torch.Generator().manual_seed(0)),
                        judge.prepare(*inputs.judged()))
    assert noise["content"] > judged["content"] and noise["style"] > judged["style"], (noise, judged)
    assert noise["content_ssim"] < judged["content_ssim"] and noise["color"] > judged["color"]
    assert judged["style"] < 1  # the run took style: closer to it than the unstylised content


# With SGD at learning rate 0 the result is the content image itself, whatever the objective: the judge must give
# it the same numbers under every objective and input option a run can change.
UNMOVED = ["optimizer=sgd", "optimizer.lr=0", "iterations=1", "image_size=32", "logger=none"]
OBJECTIVES = [
    [],
    ["style_weight=10", "content_weight=5", "style_loss=mean_std", "layers=shallow", "model=vgg19_random",
     "preserve_color=histogram", "style_scale=0.5", "tv_weight=1"],
]


def test_the_same_image_gets_the_same_numbers_whatever_the_objective(compose_at, tmp_path):
    evals = [run_nst_task(compose_at([*UNMOVED, *overrides], tmp_path / str(i))).eval
             for i, overrides in enumerate(OBJECTIVES)]
    assert evals[0] == evals[1]
    assert evals[0]["content"] == pytest.approx(0, abs=1e-6) and evals[0]["style"] == pytest.approx(1, abs=1e-6)


def test_judge_none_leaves_no_eval(compose_at, tmp_path):
    run_nst_task(compose_at(["judge=none", "image_size=32", "iterations=1", "logger=csv"], tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "eval" not in saved and all("eval" not in scale for scale in saved["scales"])
    assert not any("eval/" in key for key in csv_rows(tmp_path)[0])


def test_along_style_weight_style_falls_and_content_rises(compose_at, tmp_path):
    """A batched sweep of three style weights, 10x apart: on the judge's plane each heavier weight takes more
    style (lower eval/style) and keeps less content (higher eval/content). (At 48 px the style distance stops
    falling past about 1e5.)"""
    cfg = compose_at(["batch_sweep=true", "optimizer=adam", "optimizer.lr=0.02", "style_weight=[1e3,1e4,1e5]",
                      "image_size=48", "iterations=40", "logger=none"], tmp_path)
    judged = [run.eval for run in run_nst_task(cfg).runs]
    styles, contents = [e["style"] for e in judged], [e["content"] for e in judged]
    assert styles == sorted(styles, reverse=True) and contents == sorted(contents), judged
