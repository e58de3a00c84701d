"""Make the README's feature gallery: one style transfer per feature on the sample images.

Each entry is the command line a user would type. The script runs it into
`outputs/gallery/<name>/` (adding `logger=csv` and the run directory), copies the result to
`docs/images/gallery/<name>.png` and prints the Markdown table that the README shows.

    python scripts/gallery.py              # every entry
    python scripts/gallery.py blend masks  # only these
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
GALLERY_DIR = Path("docs/images/gallery")
MASKS = [GALLERY_DIR / "mask_top.png", GALLERY_DIR / "mask_bottom.png"]
SIZE = "image_size=128"
STYLE = "style_weight=1e5"  # at 128 px the default 1e6 lets the style swamp the cat

# name -> (what it shows, the overrides of `python scripts/run.py`)
ENTRIES: dict[str, tuple[str, list[str]]] = {
    "baseline": ("Gatys et al.: cat + coffee", [SIZE, STYLE]),
    "blend": ("two styles, blended 0.7 / 0.3", [SIZE, STYLE, "style=[coffee,hubble]", "style_blend=[0.7,0.3]"]),
    "masks": ("coffee above, hubble below (masks)",
              [SIZE, STYLE, "style=[coffee,hubble]", f"masks=[{MASKS[0]},{MASKS[1]}]"]),
    "luminance": ("colour kept: luminance only", [SIZE, STYLE, "preserve_color=luminance"]),
    "histogram": ("colour kept: style recoloured", [SIZE, STYLE, "preserve_color=histogram"]),
    "style_scale": ("style at half the scale", [SIZE, STYLE, "style_scale=0.5"]),
    "multiscale": ("coarse to fine, 64 -> 128 px",
                   [SIZE, STYLE, "multiscale.min_size=64", "multiscale.iterations=100"]),
    "mean_std": ("mean/std style loss", [SIZE, "style_loss=mean_std", "style_weight=1e2"]),
    "wasserstein": ("Wasserstein-2 style loss", [SIZE, "style_loss=wasserstein", "style_weight=1"]),
    "mrf": ("MRF style loss (Li and Wand)", [SIZE, "style_loss=mrf"]),
    "init_noise": ("started from noise", [SIZE, STYLE, "init=noise", "iterations=300"]),
    "layer_weights": ("shallow style layers weighted", [SIZE, STYLE, "layers.style=[relu1_1,relu2_1,relu3_1]",
                                                        "layers.style_weights=[0.2,0.3,0.5]"]),
    "normalize_gradients": ("neural-style's gradient normalisation, Adam",
                            [SIZE, "normalize_gradients=true", "optimizer=adam", "style_weight=5"]),
}


def make_masks() -> None:
    """Two complementary masks for the `cat` sample: the top and the bottom half, with a soft edge."""
    width, height = 451, 300
    top = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(top)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=int(255 * min(1.0, max(0.0, (170 - y) / 40))))
    top.save(REPO / MASKS[0])
    Image.eval(top, lambda v: 255 - v).save(REPO / MASKS[1])


def run_entry(name: str, overrides: list[str]) -> Path:
    run_dir = Path("outputs/gallery") / name
    shutil.rmtree(REPO / run_dir, ignore_errors=True)
    command = [sys.executable, "scripts/run.py", *overrides, "logger=csv", f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name}: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    print(done.stdout.strip().splitlines()[-1])
    shutil.copyfile(REPO / run_dir / "result.png", REPO / GALLERY_DIR / f"{name}.png")
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"entries to make (default: all): {', '.join(ENTRIES)}")
    names = parser.parse_args().names or list(ENTRIES)
    if unknown := set(names) - set(ENTRIES):
        parser.error(f"unknown entries {sorted(unknown)}; choose from {', '.join(ENTRIES)}")
    (REPO / GALLERY_DIR).mkdir(parents=True, exist_ok=True)
    make_masks()
    for name in names:
        run_entry(name, ENTRIES[name][1])
    print("\n| picture | command (`python scripts/run.py ...`) |\n|---|---|")
    for name, (caption, overrides) in ENTRIES.items():
        print(f"| ![{name}]({GALLERY_DIR / name}.png)<br>{caption} | `{' '.join(overrides)}` |")


if __name__ == "__main__":
    main()
