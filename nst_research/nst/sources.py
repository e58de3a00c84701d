"""Where input images come from: a built-in sample name or a file, checked without decoding it.

Sample images are read from the scikit-image wheel (public domain or CC0, credited in the README),
so a first run needs no files and no network. This module loads no torch, so that the command line
can refuse a missing or unreadable image at once.
"""

import importlib.util
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from nst_research.errors import UserInputError

MIN_IMAGE_SIZE = 16  # px on the long side: smaller images carry no style worth matching
MAX_MEGAPIXELS = 100.0  # input files larger than this are refused (config: max_megapixels)
Image.MAX_IMAGE_PIXELS = None  # Pillow's own decompression-bomb error is replaced by the limit above

# name -> file in skimage/data; credits in README.md ("Sample images").
SAMPLE_IMAGES = {
    "cat": "chelsea.png",
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "hubble": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
}


def sample_path(name: str) -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError("sample images come from scikit-image; pip install scikit-image")
    return Path(spec.submodule_search_locations[0]) / "data" / SAMPLE_IMAGES[name]


def resolve_image(spec: str) -> Path:
    """A sample image name or a file path -> an existing file path."""
    if spec in SAMPLE_IMAGES:
        return sample_path(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserInputError(
            f"image {spec!r} not found: give a file path or a sample name ({', '.join(SAMPLE_IMAGES)})"
        )
    if not path.is_file():
        raise UserInputError(f"image {spec!r} is a directory; give an image file")
    return path


def check_megapixels(spec: str, size: tuple[int, int], max_megapixels: float) -> None:
    megapixels = size[0] * size[1] / 1e6
    if megapixels > max_megapixels:
        raise UserInputError(f"image {spec!r} is {size[0]}x{size[1]} ({megapixels:.0f} MP), over max_megapixels="
                             f"{max_megapixels:g}; shrink it, or allow it with max_megapixels={megapixels:.0f}")


def check_image_file(spec: str, max_megapixels: float = MAX_MEGAPIXELS, what: str = "image") -> None:
    """Refuse a missing, unreadable or oversized image from its header alone (nothing is decoded)."""
    path = resolve_image(spec)
    try:
        with Image.open(path) as opened:
            check_megapixels(spec, opened.size, max_megapixels)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UserInputError(f"cannot read {what} {spec!r} ({error}); give a PNG, JPEG or other image file") from None
