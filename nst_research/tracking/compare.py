"""Compare the runs of a sweep from their directories alone (no W&B server needed).

Each run directory holds `results.json`, `.hydra/overrides.yaml` and the local metric history
`csv/metrics.csv`. `compare` writes into the sweep directory `comparison.md` (a row per run),
`contact_sheet.png` (each run's result image, labelled by what differs) and `curves.png`
(a headline curve per run, log scale), and returns the table.
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms import functional as TF
from torchvision.utils import make_grid

from nst_research.atomic import write_atomic
from nst_research.errors import UserInputError

# task -> the numbers in its table row (column, path into results.json) and the curve it plots
COLUMNS = {
    "nst": [("total loss", ("final_losses", "total")), ("content", ("final_losses", "content")),
            ("style", ("final_losses", "style"))],
    "gan": [("Frechet distance", ("frechet_distance", "final")), ("floor", ("frechet_distance", "floor")),
            *((name, ("sample_metrics", "final", name)) for name in ("precision", "recall", "density", "coverage"))],
}
CURVES = {"nst": "loss/total", "gan": "val/frechet_distance"}
TILE = 192  # px, the long side of each contact-sheet image


@dataclass
class Run:
    directory: Path
    results: dict[str, Any]
    overrides: list[str]
    label: str = ""

    @property
    def task(self) -> str:
        return self.results.get("task", "nst")


def find_runs(path: Path) -> list[Run]:
    """The runs under `path`: the run itself if it holds results.json, else its job subdirectories."""
    if not path.is_dir():
        raise UserInputError(f"{path} is not a directory; give a sweep or run directory (outputs/multiruns/...)")
    directories = [path] if (path / "results.json").is_file() else sorted(
        (p.parent for p in path.glob("*/results.json")), key=lambda p: (len(p.name), p.name))
    if not directories:
        raise UserInputError(f"no results.json in {path} or its subdirectories; is it a finished run or sweep?")
    runs = []
    for directory in directories:
        overrides_file = directory / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        runs.append(Run(directory, json.loads((directory / "results.json").read_text()), overrides or []))
    label_runs(runs)
    return runs


def latest_sweep(root: Path = Path("outputs/multiruns")) -> Path:
    """The most recent multirun directory (outputs/multiruns/<date>/<time>)."""
    sweeps = sorted(p for p in root.glob("*/*") if p.is_dir())
    if not sweeps:
        raise UserInputError(f"no multirun under {root}; run one (python scripts/run.py -m ...) or give a directory")
    return sweeps[-1]


def override_values(run: Run) -> dict[str, str]:
    """The run's command-line overrides as {key: value}."""
    return dict(o.split("=", 1) for o in run.overrides if "=" in o)


def swept_keys(runs: list[Run]) -> list[str]:
    """The override keys whose values differ between the runs (all of them for one run)."""
    parsed = [override_values(run) for run in runs]
    keys = sorted(set().union(*parsed))
    return [k for k in keys if len({p.get(k) for p in parsed}) > 1] if len(runs) > 1 else keys


def label_runs(runs: list[Run]) -> None:
    """Label each run by the overrides whose values differ between the runs (all of them for one run)."""
    differing = swept_keys(runs)
    for run in runs:
        values = override_values(run)
        run.label = ",".join(f"{k}={values[k]}" for k in differing if k in values) or run.directory.name


def lookup(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        results = results.get(key) if isinstance(results, dict) else None
    return results


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def table(runs: list[Run]) -> str:
    """A Markdown table: one row per run with its label, status, headline numbers, steps and time."""
    columns = COLUMNS.get(runs[0].task, COLUMNS["nst"])
    header = ["run", "status", *(name for name, _ in columns), "steps", "time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        steps = run.results.get("steps", run.results.get("generator_steps"))
        cells = [f"`{run.label}`", str(run.results.get("status", "?")),
                 *(number(lookup(run.results, path)) for _, path in columns),
                 str(steps if steps is not None else "-"), number(run.results.get("wall_time_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def labelled_tile(image_path: Path | None, label: str, font: ImageFont.ImageFont) -> torch.Tensor:
    """An image fitted into a TILE x TILE square (grey if missing) with its label underneath."""
    tile = Image.new("RGB", (TILE, TILE + 28), (255, 255, 255))
    if image_path is not None and image_path.is_file():
        with Image.open(image_path) as image:
            scale = TILE / max(image.size)  # small images (GAN grids, tiny tests) are enlarged without blur
            resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
            image = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), resample)
            tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
    else:
        ImageDraw.Draw(tile).rectangle([0, 0, TILE - 1, TILE - 1], fill=(200, 200, 200))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(label_lines(label)):
        draw.text((4, TILE + 2 + 12 * i), line, fill=(0, 0, 0), font=font)
    return TF.to_tensor(tile)


def label_lines(label: str, width: int = 30, lines: int = 2) -> list[str]:
    """`label` in at most `lines` lines of `width` characters, broken after its commas (between settings)
    rather than inside a number; a setting too long for a line is cut, and a last line that overflows ends in '...'."""
    out: list[str] = []
    for part in [p + "," for p in label.split(",")[:-1]] + [label.split(",")[-1]]:
        if out and len(out[-1]) + len(part) <= width:
            out[-1] += part
        else:
            out.append(part[:width])
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:width - 3] + "..."
    return out


def contact_sheet(runs: list[Run], path: Path) -> None:
    font = ImageFont.load_default()
    tiles = [labelled_tile(run.directory / run.results["result"] if run.results.get("result") else None,
                           run.label, font) for run in runs]
    grid = make_grid(tiles, nrow=min(len(tiles), 4), padding=4, pad_value=1.0)
    write_atomic(path, lambda f: TF.to_pil_image(grid).save(f, format="PNG"))


def history(directory: Path, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged metric from the run's CSV log."""
    path = directory / "csv" / "metrics.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    return [float(r["step"]) for r in rows], [float(r[key]) for r in rows]


def curves(runs: list[Run], path: Path) -> None:
    key = CURVES.get(runs[0].task, CURVES["nst"])
    figure = Figure(figsize=(7, 4.5))  # no pyplot: no display or global state needed
    axes = figure.subplots()
    for run in runs:
        steps, values = history(run.directory, key)
        if values and all(v > 0 and math.isfinite(v) for v in values):
            axes.plot(steps, values, label=run.label)
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    if axes.lines:
        axes.legend(fontsize=7)
    figure.tight_layout()
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))


def compare(path: Path) -> str:
    """Write comparison.md, contact_sheet.png and curves.png into `path`; return the table."""
    runs = find_runs(path)
    markdown = table(runs)
    write_atomic(path / "comparison.md", lambda f: f.write(f"# {path}\n\n{markdown}".encode()))
    contact_sheet(runs, path / "contact_sheet.png")
    curves(runs, path / "curves.png")
    return markdown
