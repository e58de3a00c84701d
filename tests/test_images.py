"""Image I/O: every Pillow mode becomes RGB in [0, 1]; sample names; clear errors; atomic saves."""


import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from nst_research.atomic import write_atomic
from nst_research.errors import UserInputError
from nst_research.nst.images import initial_image, load_image, save_image
from nst_research.nst.sources import SAMPLE_IMAGES, resolve_image


def pixel(image: torch.Tensor, y: int = 0, x: int = 0) -> list[float]:
    return image[0, :, y, x].tolist()


def assert_rgb_tensor(image: torch.Tensor, height: int, width: int):
    assert image.shape == (1, 3, height, width)
    assert image.dtype == torch.float32
    assert 0.0 <= image.min().item() and image.max().item() <= 1.0


# ---------------------------------------------------------------- modes

def test_rgb(tmp_path):
    Image.new("RGB", (6, 4), (255, 128, 0)).save(tmp_path / "a.png")
    image = load_image(str(tmp_path / "a.png"))
    assert_rgb_tensor(image, 4, 6)
    assert pixel(image) == pytest.approx([1.0, 128 / 255, 0.0])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))          # fully transparent: white
    rgba.paste((255, 0, 0, 255), (0, 2, 4, 4))               # opaque red bottom half
    rgba.paste((0, 0, 0, 128), (0, 1, 4, 2))                 # half-transparent black: mid grey
    rgba.save(tmp_path / "a.png")
    image = load_image(str(tmp_path / "a.png"))
    assert_rgb_tensor(image, 4, 4)
    assert pixel(image, 0) == pytest.approx([1.0, 1.0, 1.0])
    assert pixel(image, 1) == pytest.approx([127 / 255] * 3, abs=2 / 255)
    assert pixel(image, 3) == pytest.approx([1.0, 0.0, 0.0])


def test_grayscale_l(tmp_path):
    Image.new("L", (5, 3), 51).save(tmp_path / "a.png")
    image = load_image(str(tmp_path / "a.png"))
    assert_rgb_tensor(image, 3, 5)
    assert pixel(image) == pytest.approx([0.2, 0.2, 0.2])


def test_palette_p(tmp_path):
    rgb = Image.new("RGB", (4, 4), (0, 0, 255))
    rgb.paste((0, 255, 0), (0, 0, 2, 4))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "P"
    image = load_image(str(tmp_path / "a.png"))
    assert_rgb_tensor(image, 4, 4)
    assert pixel(image, 0, 0) == pytest.approx([0.0, 1.0, 0.0])
    assert pixel(image, 0, 3) == pytest.approx([0.0, 0.0, 1.0])


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 0])   # index 0 red, index 1 black
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "a.png", transparency=1)  # index 1 transparent
    image = load_image(str(tmp_path / "a.png"))
    assert pixel(image, 0, 0) == pytest.approx([1.0, 0.0, 0.0])
    assert pixel(image, 0, 1) == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize("suffix", ["tif", "jpg"])
def test_cmyk(tmp_path, suffix):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / f"a.{suffix}")  # pure red
    assert Image.open(tmp_path / f"a.{suffix}").mode == "CMYK"
    image = load_image(str(tmp_path / f"a.{suffix}"))
    assert_rgb_tensor(image, 8, 8)
    assert pixel(image, 4, 4) == pytest.approx([1.0, 0.0, 0.0], abs=3 / 255)


def test_16_bit_grayscale_png(tmp_path):
    values = np.zeros((4, 6), dtype=np.uint16)
    values[0] = 65535
    values[1] = 32768
    values[2] = 13107  # 0.2 of full scale
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    image = load_image(str(tmp_path / "a.png"))
    assert_rgb_tensor(image, 4, 6)
    assert pixel(image, 0) == pytest.approx([1.0] * 3)
    assert pixel(image, 1) == pytest.approx([0.5] * 3, abs=1 / 255)
    assert pixel(image, 2) == pytest.approx([0.2] * 3, abs=1 / 255)
    assert pixel(image, 3) == pytest.approx([0.0] * 3)


def test_dark_16_bit_png_stays_dark(tmp_path):
    """BUG check: a 16-bit PNG whose brightest value is <= 255 (a dark frame) is read as 8-bit.

    200 / 65535 is 0.3 % grey; treating it as 200 / 255 turns a nearly black picture light grey.
    """
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint16)).save(tmp_path / "dark.png")
    assert Image.open(tmp_path / "dark.png").mode == "I;16"
    image = load_image(str(tmp_path / "dark.png"))
    assert image.max().item() < 2 / 255


def test_exif_rotated_jpeg(tmp_path):
    landscape = Image.new("RGB", (40, 20), (0, 0, 255))
    landscape.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    landscape.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image = load_image(str(tmp_path / "photo.jpg"))
    assert_rgb_tensor(image, 40, 20)  # width and height swapped
    # rotated clockwise, the left (red) half is now at the top
    assert pixel(image, 5, 10) == pytest.approx([1.0, 0.0, 0.0], abs=0.05)
    assert pixel(image, 34, 10) == pytest.approx([0.0, 0.0, 1.0], abs=0.05)


# ---------------------------------------------------------------- resizing

@pytest.mark.parametrize("size, long_side, expected_hw", [
    ((80, 40), 32, (16, 32)),    # landscape
    ((30, 90), 45, (45, 15)),    # portrait
    ((50, 50), 20, (20, 20)),
    ((10, 5), 40, (20, 40)),     # upscaled as well
])
def test_long_side_resize_keeps_aspect(tmp_path, size, long_side, expected_hw):
    Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "a.png")
    image = load_image(str(tmp_path / "a.png"), long_side=long_side)
    assert_rgb_tensor(image, *expected_hw)
    assert pixel(image, expected_hw[0] // 2, expected_hw[1] // 2) == pytest.approx(
        [10 / 255, 20 / 255, 30 / 255], abs=1.5 / 255)


def test_no_long_side_keeps_original_size(tmp_path):
    Image.new("RGB", (33, 17)).save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png")).shape == (1, 3, 17, 33)


# ---------------------------------------------------------------- sample names

@pytest.mark.parametrize("name", sorted(SAMPLE_IMAGES))
def test_sample_names_resolve_and_load(name):
    assert resolve_image(name).is_file()
    image = load_image(name, long_side=32)
    assert image.shape[:2] == (1, 3) and max(image.shape[-2:]) == 32
    assert image.std().item() > 0.01  # a real picture, not a blank


# ---------------------------------------------------------------- errors

def test_missing_file_is_a_user_error(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(UserInputError, match="not found") as info:
        load_image(missing)
    assert missing in str(info.value) and "cat" in str(info.value)  # names the file and the samples


def test_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="directory"):
        load_image(str(tmp_path))


def test_text_file_is_a_user_error(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    with pytest.raises(UserInputError, match="cannot read image") as info:
        load_image(str(text))
    assert "notes.jpg" in str(info.value)


def test_truncated_png_is_a_user_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match="cannot read image"):
        load_image(str(tmp_path / "cut.png"))


# ---------------------------------------------------------------- saving

def test_save_image_writes_png_atomically(tmp_path):
    out = tmp_path / "run" / "result.png"  # parent does not exist yet
    image = torch.zeros(1, 3, 5, 7)
    image[:, 0] = 1.0
    image[:, 1, 0, 0] = 2.0    # clamped to 1
    image[:, 2, 0, 0] = -1.0   # clamped to 0
    save_image(image, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.png"]  # no temporary files left
    with Image.open(out) as saved:
        assert saved.format == "PNG" and saved.mode == "RGB" and saved.size == (7, 5)
        array = np.asarray(saved)
    assert array[0, 0].tolist() == [255, 255, 0]
    assert array[2, 3].tolist() == [255, 0, 0]


def test_save_then_load_round_trips_8_bit_values(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(np.stack([values, values[::-1], values.T], -1)).save(tmp_path / "in.png")
    image = load_image(str(tmp_path / "in.png"))
    save_image(image.squeeze(0), tmp_path / "out.png")  # (3, H, W) is accepted too
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(Image.open(tmp_path / "in.png")))


def test_save_image_overwrites(tmp_path):
    out = tmp_path / "result.png"
    save_image(torch.zeros(1, 3, 4, 4), out)
    save_image(torch.ones(1, 3, 4, 4), out)
    assert np.asarray(Image.open(out)).min() == 255
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "results.json"
    out.write_text("old and complete\n")

    def crash(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(out, crash)
    assert out.read_text() == "old and complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_an_atomic_write_gets_the_mode_a_plain_write_would(umask, tmp_path):
    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "atomic.json", lambda f: f.write(b"{}"))
        (tmp_path / "plain.json").write_bytes(b"{}")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes["atomic.json"] == modes["plain.json"] == 0o666 & ~umask


# ---------------------------------------------------------------- initial image

def test_initial_image_choices():
    content = torch.rand(1, 3, 8, 12)
    style = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(initial_image("content", content, style), content)
    assert initial_image("content", content, style) is not content  # a copy: optimising it must not change the target
    assert initial_image("style", content, style).shape == content.shape
    a = initial_image("noise", content, style, torch.Generator().manual_seed(3))
    b = initial_image("noise", content, style, torch.Generator().manual_seed(3))
    c = initial_image("noise", content, style, torch.Generator().manual_seed(4))
    assert a.shape == content.shape and torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(UserInputError, match="init"):
        initial_image("zeros", content, style)
