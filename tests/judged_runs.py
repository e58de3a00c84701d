"""Judged style-transfer runs for the comparison tests, as the judge's contract has every run judged.

`write_run` writes a run directory as task=nst lays it out (results.json with or without the judge's "eval"
block, config.yaml, .hydra/overrides.yaml, csv/metrics.csv, result.png) with the numbers a test needs.
"""

import json
import math
from pathlib import Path

import yaml
from PIL import Image

OBJECTIVE = {"terms": {"content": {"_target_": "nst_research.nst.terms.ContentTerm", "weight": 1.0},
                       "style": {"_target_": "nst_research.nst.terms.StyleTerm", "weight": 1e6,
                                 "loss": {"_target_": "nst_research.nst.style_losses.GramStyleLoss"}}}}


def write_run(directory: Path, overrides: list[str], total: float, judged: tuple[float, float] | None,
              style_weight: float = 1e6, optimizer: str = "torch.optim.LBFGS", status: str = "completed") -> None:
    """A run directory as task=nst writes it, with `judged` = (eval content, eval style) or no eval block."""
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    objective = json.loads(json.dumps(OBJECTIVE))
    objective["terms"]["style"]["weight"] = style_weight
    config = {"task": "nst", "optimizer": {"_target_": optimizer}, "objective": objective, "content": "cat",
              "style": "coffee", "image_size": 32, "style_weight": style_weight, "seed": 0}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    results = {"status": status, "task": "nst", "wall_time_s": 1.0, "result": "result.png", "steps": 2,
               "final_losses": {"total": total, "content": total / 2, "style": total / 2e6}}
    if judged is not None:
        content, style = judged
        results["eval"] = {"judge": {"name": "vgg19_sliced_wasserstein"}, "content": content, "style": style,
                           "score": math.hypot(content, style), "color": 0.5, "content_ssim": 0.8,
                           "content_raw": content, "style_raw": style, "color_raw": 0.5}
    (directory / "results.json").write_text(json.dumps(results))
    Image.new("RGB", (32, 24), (120, 90, 60)).save(directory / "result.png")
    (directory / "csv").mkdir()
    (directory / "csv" / "metrics.csv").write_text(f"loss/total,step\n{total * 3},1\n{total},2\n")


def style_weight_sweep(root: Path, judged: bool = True) -> Path:
    """Three runs at style_weight 1e4, 1e5, 1e6: the smallest weight has the smallest total loss, the judge's
    score puts it last (its style is furthest), and each keeps more content or takes more style than the others
    (all three on the Pareto front)."""
    for job, (weight, total, point) in enumerate([(1e4, 20.0, (0.30, 0.95)), (1e5, 60.0, (0.45, 0.40)),
                                                  (1e6, 160.0, (0.60, 0.30))]):
        write_run(root / str(job), [f"style_weight={weight}", "image_size=32"], total, point if judged else None,
                  style_weight=weight)
    return root


def write_config(directory: Path, **settings: object) -> None:
    """Set keys of a run's config.yaml, as a resume (`resume=<dir> iterations=60`) or a sweep's job records them."""
    config = yaml.safe_load((directory / "config.yaml").read_text())
    (directory / "config.yaml").write_text(yaml.safe_dump({**config, **settings}))


def day_of_runs(root: Path) -> Path:
    """outputs/runs/<date> after a day of unrelated work: a style transfer; a completed batched sweep of two style
    weights, its elements one folder further down under a directory Hydra started (with its lock file, held by no
    one); a GAN; and a feed-forward training that `hydra.run.dir` put two folders further down."""
    write_run(root / "10-00-00", ["optimizer=adam", "iterations=4"], 30.0, None)
    batch = root / "10-05-00"
    (batch / ".hydra").mkdir(parents=True)
    (batch / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["batch_sweep=true", "style_weight=[1e4,1e6]"]))
    (batch / ".lock").write_text("4242\n")
    for b, weight in enumerate((1e4, 1e6)):
        write_run(batch / str(b), [f"style_weight={weight}"], 10.0 * (b + 1), None, style_weight=weight)
        write_config(batch / str(b), sweep={"dir": str(batch), "group": "day_10-05-00", "job": b})
    gan = root / "10-10-00"
    (gan / ".hydra").mkdir(parents=True)
    (gan / ".hydra" / "overrides.yaml").write_text("- task=gan\n- gan=dcgan\n")
    (gan / "config.yaml").write_text("task: gan\n")
    (gan / "results.json").write_text(json.dumps(
        {"status": "completed", "task": "gan", "frechet_distance": {"final": 42.3, "floor": 5.0}}))
    feedforward = root / "pics" / "styles" / "10-15-00"
    (feedforward / ".hydra").mkdir(parents=True)
    (feedforward / ".hydra" / "overrides.yaml").write_text("- task=feedforward\n- photos=folder\n")
    (feedforward / "config.yaml").write_text("task: feedforward\n")
    (feedforward / "results.json").write_text(json.dumps(
        {"status": "completed", "task": "feedforward", "steps": 6, "final_losses": {"total": 26.6}}))
    return root
