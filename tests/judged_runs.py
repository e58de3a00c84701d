"""Judged style-transfer runs for the comparison tests, as the judge's contract has every run judged.

`JudgeAtEnd` is a Lightning callback that the tests add to a run's trainer
(`+trainer.callbacks=[{_target_:judged_runs.JudgeAtEnd}]`, with tests/ on PYTHONPATH): at the end of the fit
it judges the run's image with the default judge (conf/judge/default.yaml), logs the numbers as `eval/<key>`
at the final step to the run's loggers (CSV and W&B), and leaves them in `eval.json`; `add_eval_blocks` then
puts them into each run's results.json as its "eval" block, with the judge's settings.
"""

import json
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import OmegaConf

from nst_research.parts import build

JUDGE_NODE = Path(__file__).resolve().parents[1] / "conf" / "judge" / "default.yaml"
JUDGED = "eval.json"


class JudgeAtEnd(pl.Callback):
    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        judge = build(OmegaConf.load(JUDGE_NODE))
        styles = list(module.styles.as_dict().values())
        masks = list(module.masks.as_dict().values()) if module.masks is not None else None
        numbers = judge(module.image.detach(), module.content, styles, module.blend, masks)
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/{key}": value for key, value in numbers.items()}, step=trainer.global_step)
        (Path(trainer.default_root_dir) / JUDGED).write_text(json.dumps({"judge": judge.settings(), **numbers}))


def add_eval_blocks(sweep: Path) -> None:
    """Each job's eval.json into its results.json as the "eval" block."""
    for judged in sweep.glob(f"*/{JUDGED}"):
        results = json.loads((judged.parent / "results.json").read_text())
        results["eval"] = json.loads(judged.read_text())
        (judged.parent / "results.json").write_text(json.dumps(results, indent=2))
