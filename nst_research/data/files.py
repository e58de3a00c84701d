"""Listing the image files of a folder, shared by data modules and scripts (no Lightning import)."""

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from nst_research.errors import UserInputError


def image_files(root: Path, key: str = "data.root") -> list[Path]:
    """Every image file under `root` (recursively), sorted; `key` names the config value in errors."""
    if not root.is_dir():
        raise UserInputError(f"{key}={root} is not a folder; point {key} at a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise UserInputError(f"{key}={root} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return files
