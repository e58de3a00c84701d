"""Judge any image, or any run's result, from the command line, on the same yardstick as every run.

    python scripts/judge.py <image or run dir>... --content IMG --style IMG [--style IMG] [--blend W ...] [--json]

An image may come from any tool and have any size; it is judged against `--content` (resized to the image's
size) and the `--style` images (blended by `--blend`, equal by default). A run directory means its result.png,
judged against the images the run's own judge used when `--content`/`--style` are not given: its content.png and
style.png (style_<i>.png), or, where preserve_color or style_scale changed those files, the content and styles its
config.yaml names; with the run's style_blend and masks. Prints a table, one row per image (the relative numbers,
then the raw distances), or JSON with the judge's settings. Every input is read before any is judged: a bad one
is one `error:` line on stderr, exit status 2.

Only argparse is imported before the arguments are parsed, so --help answers at once.
"""

import argparse
from pathlib import Path
from typing import Any

from nst_research.errors import one_line_errors

COLUMNS = ("content", "style", "score", "color", "content_ssim", "content_raw", "style_raw", "color_raw")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "judge"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/judge.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="image files or sample names, or run directories (their result.png)")
    parser.add_argument("--content", help="the content image (file or sample name); a run directory's own by default")
    parser.add_argument("--style", action="append", help="a style image; repeat for several")
    parser.add_argument("--blend", type=float, nargs="+", help="one weight per style (default: equal)")
    parser.add_argument("--size", type=int, help="judge at this long side in pixels (default: each image's own size)")
    parser.add_argument("--judge", default="default", help="a judge of conf/judge/ (default: default)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = judge_images(args)
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        print(table(report["images"]), end="")
    return 0


def judge_images(args: argparse.Namespace) -> dict[str, Any]:
    """Read every input, then judge each image: the judge's settings and one record per image."""
    from functools import lru_cache

    from nst_research.errors import UserInputError
    from nst_research.nst.images import MIN_IMAGE_SIZE, load_image

    if (args.content is None) != (args.style is None) or args.blend is not None and args.style is None:
        raise UserInputError("give --content and --style together (and --blend only with them), or neither to judge "
                             "run directories against their own inputs")
    if args.size is not None and args.size < MIN_IMAGE_SIZE:
        raise UserInputError(f"--size {args.size} is too small; give at least {MIN_IMAGE_SIZE} px")
    load = lru_cache(load_image)  # a content or style shared by several images is read once per size
    cases = [case(spec, args, load) for spec in args.images]
    judge = load_judge(args.judge)
    return {"judge": judge.settings(), "images": [{"image": label, **judge(image, *inputs)}
                                                  for label, image, inputs in cases]}


def case(spec: str, args: argparse.Namespace, load: Any) -> tuple[str, Any, tuple]:
    """One image to judge: its label, the image, and what it is judged against (content, styles, blend, masks),
    every file read."""
    from nst_research.errors import UserInputError

    run_dir = Path(spec).expanduser()
    if run_dir.is_dir():
        if not (run_dir / "result.png").is_file():
            raise UserInputError(f"{spec} is a directory without result.png; give an image, or a style-transfer run "
                                 "directory")
        image = load(str(run_dir / "result.png"), args.size)
        if args.style is None:
            return spec, image, run_inputs(run_dir, image, load)
    else:
        image = load(spec, args.size)
        if args.style is None:
            raise UserInputError(f"{spec}: no content to judge it against; give --content and --style (or a run "
                                 "directory, judged against its own)")
    long = max(image.shape[-2:])
    return spec, image, (load(args.content, long), [load(style, long) for style in args.style], args.blend, None)


def run_inputs(run_dir: Path, image: Any, load: Any) -> tuple:
    """What a style-transfer run's judge compared its result with: content.png and style.png (style_<i>.png), or
    the images its config names where preserve_color or style_scale changed those files; its blend and masks."""
    import yaml

    from nst_research.errors import UserInputError
    from nst_research.nst.images import load_mask
    from nst_research.nst.styles import style_list

    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    long = max(image.shape[-2:])
    if config.get("preserve_color", "none") != "none" or config.get("style_scale", 1.0) != 1.0:
        content, styles = config["content"], style_list(config["style"])
    elif (run_dir / "content.png").is_file():
        content = str(run_dir / "content.png")
        numbered = sorted(run_dir.glob("style_*.png"), key=lambda path: int(path.stem.split("_")[1]))
        styles = [str(path) for path in numbered or [run_dir / "style.png"]]
    else:
        raise UserInputError(f"{run_dir} has no content.png; give --content and --style")
    masks = config.get("masks")
    masks = None if masks is None else [load_mask(spec, tuple(image.shape[-2:])) for spec in style_list(masks)]
    return load(content, long), [load(style, long) for style in styles], config.get("style_blend"), masks


def load_judge(name: str) -> Any:
    """The judge of `conf/judge/<name>.yaml`, on the CPU."""
    from omegaconf import OmegaConf

    from nst_research.errors import UserInputError
    from nst_research.parts import build

    options = sorted(path.stem for path in CONF_DIR.glob("*.yaml"))
    node = OmegaConf.load(CONF_DIR / f"{name}.yaml") if name in options else None
    if node is None or "_target_" not in node:
        judges = ", ".join(option for option in options if option != "none")
        raise UserInputError(f"--judge {name}: not a judge; choose one of {judges}")
    return build(node)


def table(records: list[dict[str, Any]]) -> str:
    """One row per image: the judge's relative numbers (content 0 = the content kept, style 0 = the style's
    distributions; score their mean), SSIM (1 = the content's structure), then the raw distances."""
    lines = ["| image | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    lines += ["| " + " | ".join([record["image"], *(f"{record[key]:.4f}" for key in COLUMNS)]) + " |"
              for record in records]
    return "\n".join(lines) + "\n"
