"""Folders of training images with files that do not decode, too few images, and DataLoader workers: bad data
is one error line naming the file and the fix, before anything is written where the folder is small, and
after the run started (kept, failed) where it is found while training; `skip_unreadable=true` leaves such
files out in one warning line."""

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from PIL import Image

from nst_research.data import files
from nst_research.errors import UserInputError, user_message
from nst_research.feedforward.task import run as run_feedforward
from nst_research.gan.task import run as run_gan

FEEDFORWARD = ["task=feedforward", "image_size=32", "layers=shallow", "network.width=4", "network.blocks=1",
               "judge=none", "logger=none", "photos=folder", "photos.batch_size=4", "trainer.max_steps=2",
               "trainer.val_check_interval=2", "sample_every=2"]
GAN = ["task=gan", "gan=dcgan64", "gan.image_size=32", "data=image_folder", "data.batch_size=2", "metric.samples=3",
       "metric.k=2", "logger=none"]


def good_images(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (40, 48), (60 * i % 255, 100, 200)).save(root / f"good{i}.png")


def unreadable(root: Path, kind: str) -> Path:
    """A file with an image's name that does not decode: text, or a PNG cut in half."""
    if kind == "not an image":
        path = root / "notimage.jpg"
        path.write_text("not an image\n")
        return path
    path = root / "zz_truncated.png"
    Image.effect_noise((64, 64), 60).convert("RGB").save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["not an image", "truncated"])
@pytest.mark.parametrize("task", ["feedforward", "gan"])
def test_an_unreadable_file_in_a_small_folder_is_refused_before_the_run_starts(compose_cfg, tmp_path, task, kind):
    root, run_dir = tmp_path / "images", tmp_path / "run"
    good_images(root, 8)
    bad = unreadable(root, kind)
    node, run = ("photos", run_feedforward) if task == "feedforward" else ("data", run_gan)
    overrides = FEEDFORWARD if task == "feedforward" else GAN
    with pytest.raises(UserInputError) as raised:
        run(compose_cfg([*overrides, f"{node}.root={root}"], output_dir=run_dir))
    message = str(raised.value)
    assert f"cannot read image {bad}" in message and f"{node}.skip_unreadable=true" in message
    assert "\n" not in message and not run_dir.exists()


@pytest.mark.parametrize("node, config", [("photos", FEEDFORWARD), ("data", GAN)])
def test_skip_unreadable_leaves_the_files_out_in_one_warning_line(compose_cfg, tmp_path, capsys, node, config):
    root = tmp_path / "images"
    good_images(root, 8)
    bad = [unreadable(root, kind) for kind in ("not an image", "truncated")]
    cfg = compose_cfg([*config, f"{node}.root={root}", f"{node}.skip_unreadable=true"])
    datamodule = instantiate(cfg[node])
    datamodule.setup("fit")
    dataset = datamodule.train_set if node == "photos" else datamodule.dataset
    assert len(dataset) == 8 and not set(bad) & set(dataset.files)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: skipped 2 unreadable image file(s) ({node}.skip_unreadable=true): {bad[0]}")


def test_a_gan_folder_too_small_is_refused_before_the_run_starts_naming_the_knob(compose_cfg, tmp_path):
    root, run_dir = tmp_path / "images", tmp_path / "run"
    good_images(root, 10)
    with pytest.raises(UserInputError, match=r"trains on 10 images, fewer than data.batch_size=64: lower "
                                             r"data.batch_size \(e.g. data.batch_size=10\) or add images"):
        run_gan(compose_cfg([*GAN, f"data.root={root}", "data.batch_size=64"], output_dir=run_dir))
    assert not run_dir.exists()
    with pytest.raises(UserInputError, match="the metric compares 2 x data.reference_size=2000 real ones: lower "
                                             "metric.samples .* to at most 5"):
        run_gan(compose_cfg([*GAN, f"data.root={root}", "metric.samples=1000"], output_dir=run_dir))
    assert not run_dir.exists()


@pytest.mark.parametrize("node, config", [("photos", FEEDFORWARD), ("data", GAN)])
def test_workers_default_to_the_cpus_this_process_may_use(compose_cfg, tmp_path, monkeypatch, node, config):
    root = tmp_path / "images"
    good_images(root, 8)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    datamodule = instantiate(compose_cfg([*config, f"{node}.root={root}"])[node])
    assert datamodule.train_dataloader().num_workers == 1


@pytest.fixture
def checked_while_training(monkeypatch, tmp_path) -> tuple[Path, Path]:
    """Four photos, one truncated, in a folder treated as too large to decode before the run: a batch of four
    is every photo, so the truncated one is read at the first step (by a DataLoader worker process)."""
    monkeypatch.setattr(files, "CHECK_LIMIT", 0)
    root = tmp_path / "images"
    good_images(root, 3)
    return root, unreadable(root, "truncated")


def test_a_file_found_unreadable_while_training_fails_the_run_and_keeps_it(compose_cfg, tmp_path,
                                                                           checked_while_training):
    root, bad = checked_while_training
    run_dir = tmp_path / "run"
    with pytest.raises(UserInputError) as raised:
        run_feedforward(compose_cfg([*FEEDFORWARD, f"photos.root={root}", "photos.num_workers=1"],
                                    output_dir=run_dir))
    message = user_message(raised.value)
    assert message.startswith(f"cannot read image {bad}") and "\n" not in message
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == f"UnreadableImage: {message}"
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()  # resume=<run dir> continues it


def test_skip_unreadable_while_training_counts_the_files_in_one_warning_line(compose_cfg, tmp_path, capfd,
                                                                             checked_while_training):
    root, bad = checked_while_training
    results = run_feedforward(compose_cfg([*FEEDFORWARD, f"photos.root={root}", "photos.num_workers=1",
                                           "photos.skip_unreadable=true"], output_dir=tmp_path / "run"))
    assert results.status == "completed" and results.steps == 2
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert warnings == [f"warning: skipped 1 unreadable image file(s) (photos.skip_unreadable=true): {bad}"]


def test_an_unreadable_file_read_by_a_worker_process_is_one_error_line(run_cli, tmp_path):
    """On the command line, a folder too large to check first: the worker's error is the one line, exit 2, and the
    run that started is kept (failed) with the same message."""
    root, run_dir = tmp_path / "images", tmp_path / "run"
    root.mkdir()
    for i in range(files.CHECK_LIMIT + 1):
        (root / f"{i:04d}.jpg").write_text("not an image\n")
    result = run_cli(*FEEDFORWARD, f"photos.root={root}", "photos.num_workers=1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: cannot read image {root}/") and "photos.skip_unreadable=true" in line
    assert f"resume={run_dir}" in line
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"].startswith(f"UnreadableImage: cannot read image {root}/")
