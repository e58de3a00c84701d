"""A researcher's own loss, from outside the package, by config alone: one class and one YAML in
their own folders, chosen on the command line like a shipped one (docs/architecture.md shows how)."""

import json
import os
import re
import textwrap

import pytest

from nst_research.errors import UserInputError
from nst_research.parts import check_targets

LOSS_MODULE = '''
import torch
from nst_research.nst.style_losses import StyleLoss


class ChannelMeanLoss(StyleLoss):
    """Match only each channel's mean activation."""

    def statistics(self, features):
        return {"mean": features.mean(dim=(2, 3))}

    def __call__(self, features, targets, mask=None):
        return (features.mean(dim=(2, 3)) - targets["mean"]).pow(2).mean()
'''

TERM_MODULE = '''
from nst_research.nst.terms import LossTerm


class BrightnessTerm(LossTerm):
    """Pull the image's mean brightness towards `target`."""

    def __init__(self, weight=1.0, target=0.5):
        super().__init__(weight, name="brightness")
        self.target = target

    def value(self, image, features):
        return (image.mean() - self.target) ** 2, {}
'''


def test_a_style_loss_and_a_term_from_outside_the_package(run_cli, tmp_path):
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(LOSS_MODULE))
    (tmp_path / "my_terms.py").write_text(textwrap.dedent(TERM_MODULE))
    (tmp_path / "conf" / "style_loss").mkdir(parents=True)
    (tmp_path / "conf" / "term").mkdir()
    (tmp_path / "conf" / "style_loss" / "channel_mean.yaml").write_text("_target_: my_losses.ChannelMeanLoss\n")
    (tmp_path / "conf" / "term" / "brightness.yaml").write_text(
        "_target_: my_terms.BrightnessTerm\nweight: 10.0\ntarget: 0.8\n")
    run_dir = tmp_path / "run"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_cli("--config-dir", str(tmp_path / "conf"), "style_loss=channel_mean", "style_weight=100",
                     "+term@objective.terms.brightness=brightness", "image_size=32", "iterations=5", "logger=csv",
                     f"hydra.run.dir={run_dir}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"
    losses = results["final_losses"]
    assert {"brightness", "style/relu1_1"} <= set(losses)  # the new term is logged by its name
    expected = losses["content"] + 100 * losses["style"] + 10 * losses["brightness"] + 0 * losses["tv"]
    assert losses["total"] == pytest.approx(expected, rel=1e-4)
    assert losses["brightness"] < results["initial_losses"]["brightness"]


def test_a_loss_off_pythonpath_is_one_line_and_writes_nothing(run_cli, tmp_path):
    """Forgetting PYTHONPATH for one's own loss: one line naming the class, exit 2, and no run directory or
    empty date folder where the command ran."""
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(LOSS_MODULE))
    (tmp_path / "conf" / "style_loss").mkdir(parents=True)
    (tmp_path / "conf" / "style_loss" / "channel_mean.yaml").write_text("_target_: my_losses.ChannelMeanLoss\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("--config-dir", str(tmp_path / "conf"), "style_loss=channel_mean", "image_size=32",
                     "iterations=2", "logger=csv", cwd=work)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip() == ("error: style_loss: cannot import my_losses.ChannelMeanLoss "
                                     "(No module named 'my_losses'); is it on PYTHONPATH?")
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("target, named", [
    ("lightning.pytorch.callbacks.Timr",
     "cannot import lightning.pytorch.callbacks.Timr: lightning.pytorch.callbacks has no Timr; check the name"),
    ("my_callbacks.Timer", "cannot import my_callbacks.Timer (No module named 'my_callbacks'); is it on PYTHONPATH?"),
])
def test_every_target_is_imported_before_the_run(compose_cfg, target, named):
    cfg = compose_cfg([f"+callbacks.timer._target_={target}"])
    with pytest.raises(UserInputError, match=re.escape(f"callbacks.timer: {named}")):
        check_targets(cfg)
    check_targets(compose_cfg(["task=gan"]))  # every shipped part imports
