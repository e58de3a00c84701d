"""scripts/stylize.py: stylise images of any size from a run directory or checkpoint; export; clear errors."""

import errno
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nst_research.errors import UserInputError
from nst_research.feedforward.checkpoint import load_network
from nst_research.feedforward.module import FeedForwardModule
from nst_research.feedforward.stylize import exported, main
from nst_research.nst.images import load_image

REPO = Path(__file__).resolve().parents[1]
NETWORK = {"_target_": "nst_research.feedforward.network.JohnsonNet", "width": 4, "blocks": 1}


class MeanColour(nn.Module):
    """A cheap objective with the interface FeedForwardModule expects: keep the content, take the style's colour."""

    def set_styles(self, styles, blend):
        self.colour = styles[0].mean((2, 3), keepdim=True)

    def set_content(self, content):
        self.content = content

    def forward(self, images):
        content = (images - self.content).pow(2).mean()
        style = (images.mean((2, 3), keepdim=True) - self.colour).pow(2).mean()
        return {"total": content + style, "content": content, "style": style}


class SizeBranch(nn.Module):
    """A network whose forward depends on the image's width: torch.export cannot make it any size."""

    def forward(self, image):
        return image.flip(-1) if image.shape[-1] > 100 else image


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory whose best.ckpt and last.ckpt hold different networks (two steps on random photos)."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    photos = torch.rand(4, 3, 24, 24)
    module = FeedForwardModule(NETWORK, MeanColour(), functools.partial(torch.optim.Adam, lr=1e-2),
                               styles=[torch.rand(1, 3, 24, 24)], blend=[1.0], samples=photos[:2])
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, torch.utils.data.DataLoader(photos, batch_size=2))
    trainer.save_checkpoint(run / "checkpoints" / "best.ckpt")
    with torch.no_grad():
        module.network.net[-1][1].bias.add_(1.0)  # the output conv: a visibly different picture
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    return run


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """Photos of sizes and aspects the network never saw, as PNG and JPEG."""
    torch.manual_seed(1)
    paths = {}
    for name, (width, height) in {"wide.png": (45, 23), "tall.jpg": (30, 61), "big.png": (90, 50)}.items():
        paths[name] = tmp_path / "in" / name
        paths[name].parent.mkdir(exist_ok=True)
        pixels = (torch.rand(height, width, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(paths[name])
    return paths


def network_output(checkpoint: Path, image: Path, size: int | None = None) -> torch.Tensor:
    with torch.no_grad():
        return load_network(checkpoint)(load_image(str(image), long_side=size))[0]


def read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255


def test_stylizes_images_of_any_size_with_the_best_checkpoint(run_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(run_dir), str(images["wide.png"]), str(images["tall.jpg"]), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("wide_stylized.png (45x23)")
    for name in ("wide.png", "tall.jpg"):
        written = read(out / (Path(name).stem + "_stylized.png"))
        expected = network_output(run_dir / "checkpoints" / "best.ckpt", images[name])
        assert written.shape == expected.shape == load_image(str(images[name]))[0].shape
        assert (written - expected).abs().max() <= 1 / 255 + 1e-6  # 8-bit PNG (to_pil_image truncates)
        other = network_output(run_dir / "checkpoints" / "last.ckpt", images[name])
        assert (written - other).abs().mean() > 0.1  # not last.ckpt: best.ckpt comes first


def test_run_directory_without_best_uses_last(run_dir, images, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    assert main([str(run), str(images["wide.png"]), "--out", str(tmp_path / "out")]) == 0
    expected = network_output(run_dir / "checkpoints" / "last.ckpt", images["wide.png"])
    assert (read(tmp_path / "out" / "wide_stylized.png") - expected).abs().max() <= 1 / 255 + 1e-6


def test_size_sets_the_long_side_and_folders_are_searched(run_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(run_dir / "checkpoints" / "last.ckpt"), str(images["big.png"].parent), "--size", "40",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["big_stylized.png", "tall_stylized.png", "wide_stylized.png"]
    assert Image.open(out / "big_stylized.png").size == (40, 22)
    assert Image.open(out / "tall_stylized.png").size == (20, 40)
    assert len(capsys.readouterr().out.splitlines()) == 3


def fake_checkpoints(tmp_path: Path, run_dir: Path) -> dict[str, Path]:
    """Files that are not feed-forward checkpoints."""
    folder = tmp_path / "fakes"
    folder.mkdir()
    gan = {"state_dict": {"generator.weight": torch.zeros(1)}, "global_step": 1, "hyper_parameters": {}}
    torch.save(gan, folder / "gan.ckpt")
    torch.save({"image": torch.zeros(1, 3, 8, 8), "scale_steps": 3}, folder / "checkpoint.pt")  # style transfer's
    (folder / "notes.ckpt").write_text("not a checkpoint")
    code = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    code["hyper_parameters"]["network"] = {"_target_": "os.system", "command": "touch pwned"}
    torch.save(code, folder / "code.ckpt")
    wrong = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    wrong["hyper_parameters"]["network"]["width"] = 8
    torch.save(wrong, folder / "wrong.ckpt")
    (folder / "empty_run").mkdir()
    return {path.name: path for path in folder.iterdir()}


@pytest.mark.parametrize("case, message", [
    ("missing image", "does not exist"),
    ("unreadable image", "cannot read image"),
    ("folder without images", "holds no images"),
    ("same name twice", "would both be written"),
    ("nothing to do", "no images given"),
    ("tiny size", "--size 4 is too small"),
    ("gan.ckpt", "not a feed-forward checkpoint"),
    ("checkpoint.pt", "not a feed-forward checkpoint"),
    ("notes.ckpt", "cannot read checkpoint"),
    ("code.ckpt", "not a torch.nn.Module class"),
    ("wrong.ckpt", "the weights do not fit"),
    ("empty_run", "has no checkpoints/best.ckpt, last.ckpt or interrupted.ckpt"),
    ("missing checkpoint", "does not exist"),
])
def test_bad_input_is_one_error_line_and_nothing_written(run_dir, images, tmp_path, capsys, monkeypatch, case,
                                                         message):
    monkeypatch.chdir(tmp_path)
    fakes = fake_checkpoints(tmp_path, run_dir)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    shutil.copy(images["wide.png"], tmp_path / "other" / "wide.png")
    good, out = str(images["wide.png"]), tmp_path / "out"
    checkpoint, inputs, extra = str(run_dir), [good], []
    if case in fakes:
        checkpoint = str(fakes[case])
    inputs = {"missing image": [good, "no_such.png"], "unreadable image": [good, "broken.png"],
              "folder without images": [good, "empty"], "same name twice": [good, "other/wide.png"],
              "nothing to do": []}.get(case, inputs)
    extra = ["--size", "4"] if case == "tiny size" else []
    checkpoint = "no_such_run" if case == "missing checkpoint" else checkpoint
    assert main([checkpoint, *inputs, "--out", str(out), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and message in captured.err
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_exported_program_matches_the_checkpoint_at_any_size(run_dir, tmp_path, capsys):
    assert main([str(run_dir), "--export", "pt2", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"pt2: {tmp_path / 'network.pt2'}"
    assert captured.err == ""  # torch.jit.load's deprecation is gone with torch.jit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.pt2"]
    exported = torch.export.load(tmp_path / "network.pt2").module()  # as docs/feedforward.md shows
    for shape in [(2, 3, 37, 53), (1, 3, 64, 64), (3, 3, 5, 200)]:  # never traced; a multiple of 4; tiny
        image = torch.rand(*shape)
        with torch.no_grad():
            torch.testing.assert_close(exported(image), load_network(run_dir)(image), atol=1e-5, rtol=0)


def test_a_network_that_cannot_take_every_size_is_refused_in_one_line():
    with pytest.raises(UserInputError, match=r"^--export: SizeBranch cannot be exported for every image size "
                                             r"\(Constraints violated \(width\)\); export a network"):
        exported(SizeBranch())


def test_run_stopped_before_its_first_validation_uses_interrupted(run_dir, images, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run / "checkpoints" / "interrupted.ckpt")
    assert main([str(run), str(images["wide.png"]), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"using {run / 'checkpoints' / 'interrupted.ckpt'}: the run stopped before its first "
                            "validation, and this is its only network\n")
    expected = network_output(run_dir / "checkpoints" / "last.ckpt", images["wide.png"])
    assert (read(tmp_path / "out" / "wide_stylized.png") - expected).abs().max() <= 1 / 255 + 1e-6


def test_default_output_folder_is_under_outputs(run_dir, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(run_dir), str(images["wide.png"])]) == 0
    assert (tmp_path / "outputs" / "stylized" / "wide_stylized.png").is_file()
    assert not (tmp_path / "stylized").exists()


@pytest.mark.parametrize("kind, name", [("pt2", "network.pt2"), ("onnx", "network.onnx")])
def test_failed_export_leaves_no_partial_file(run_dir, tmp_path, capsys, monkeypatch, kind, name):
    if kind == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / "out"
    out.mkdir()

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert main([str(run_dir), "--export", kind, "--out", str(out)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert list(out.iterdir()) == []  # neither the file nor its temporary


def test_onnx_export_matches_the_checkpoint_at_a_new_size(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    assert main([str(run_dir), "--export", "onnx", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"onnx: {tmp_path / 'network.onnx'}\n"  # no exporter chatter
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.onnx"]  # one file: weights inside
    session = onnxruntime.InferenceSession(str(tmp_path / "network.onnx"), providers=["CPUExecutionProvider"])
    image = torch.rand(2, 3, 37, 53)  # exported with 64x64: another batch size, height and width
    (output,) = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(output), load_network(run_dir)(image), atol=1e-5, rtol=0)


def test_script_exit_status(run_dir, images, tmp_path):
    script = [sys.executable, str(REPO / "scripts" / "stylize.py"), str(run_dir)]
    done = subprocess.run([*script, str(images["tall.jpg"]), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("tall_stylized.png (30x61)")
    failed = subprocess.run([*script, str(tmp_path / "nothing.png")], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and failed.stdout == ""
