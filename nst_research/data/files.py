"""The image files of a folder, shared by data modules and scripts (no Lightning import): listing them, reading
one, and checking a small folder's files before a run starts.

A file that does not decode (not an image, truncated) is an `UnreadableImage` naming it and the fix, or, where
the data node sets `skip_unreadable`, a file left out and counted in one warning line. A folder of up to
`CHECK_LIMIT` images is decoded whole before anything is written (a JPEG at 1/8 scale, which still reads every
byte); a larger one (COCO train2014 holds about 83,000) would be read twice, so it is checked as training reads
it (`nst_research.data.loaders.SkipUnreadable`).
"""

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from nst_research.errors import UserInputError
from nst_research.tracking.console import notice

CHECK_LIMIT = 1000  # folders of up to this many images are decoded whole before the run starts


class UnreadableImage(UserInputError):
    """An image file that does not decode; `path` is the file. Built from its message alone too: a DataLoader
    worker process re-raises an item's error in the main process as `type(error)(message)`."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def image_files(root: Path, key: str = "data.root") -> list[Path]:
    """Every image file under `root` (recursively), sorted; `key` names the config value in errors."""
    if not root.is_dir():
        raise UserInputError(f"{key}={root} is not a folder; point {key} at a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise UserInputError(f"{key}={root} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return files


def read_image(path: Path, node: str, reduced: bool = False) -> Image.Image:
    """The decoded image of `path` (reduced: a JPEG decoded at 1/8 scale, for checking it); `node` is the data's
    config node, whose `skip_unreadable` the error names."""
    try:
        with Image.open(path) as image:
            if reduced:
                image.draft(None, (1, 1))
            image.load()
            return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"cannot read image {path} ({error}): remove it, or set {node}.skip_unreadable=true "
                              "to train without the files that do not read", path) from None


def readable_files(files: list[Path], node: str, skip: bool) -> list[Path]:
    """`files`, each decoded once when there are at most `CHECK_LIMIT` (more are left to be checked as they are
    read): the first that does not decode is an `UnreadableImage`, or with `skip` every such file is left out,
    counted in one warning line."""
    if len(files) > CHECK_LIMIT:
        return files
    readable, unreadable = [], []
    for path in files:
        try:
            read_image(path, node, reduced=True)
        except UnreadableImage:
            if not skip:
                raise
            unreadable.append(path)
        else:
            readable.append(path)
    warn_skipped(unreadable, node)
    return readable


def warn_skipped(unreadable: list[Path], node: str) -> None:
    """One warning line for the files `node.skip_unreadable` left out (none: no line)."""
    if unreadable:
        more = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
        notice(f"warning: skipped {len(unreadable)} unreadable image file(s) ({node}.skip_unreadable=true): "
               f"{unreadable[0]}{more}")
