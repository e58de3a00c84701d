"""Compare runs from their directories alone (no W&B server needed): one run, a sweep, or a folder of runs.

Each run directory holds `results.json`, `config.yaml`, `.hydra/overrides.yaml` and the local metric
history `csv/metrics.csv`. `compare` finds the runs under the directory it is given (`read_folder`: a run,
a sweep's jobs, or every run up to four folders down, those running now included), and writes into it
`comparison.md` (what the folder holds; a row per run, and what the runs are ranked by), `contact_sheet.png`
(each run's result image, labelled by what differs), `curves.png` (a headline curve per run, log scale)
and, for judged runs, `tradeoff.png` (the judge's content against style distance, with the Pareto front),
and returns the table. Runs of different tasks get a section each, with their own pictures.

A run's total loss means something else when its objective differs (a larger `style_weight` makes a
larger total for the same picture), so runs are ranked by total loss only where they all optimised one
objective, and otherwise by the fixed judge's score (`eval.score` in results.json).
"""

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from nst_research.tracking.results import lookup, read_results
from nst_research.tracking.runlock import is_running

TOTAL = ("total loss", ("final_losses", "total"))
SCORE = ("eval score", ("eval", "score"))
# the judge's numbers of a run (results.json's "eval" block): lower is better, except SSIM (1 = the content's structure)
EVAL_COLUMNS = [("eval content", ("eval", "content")), ("eval style", ("eval", "style")), SCORE,
                ("SSIM", ("eval", "content_ssim"))]
# task -> the numbers in its table row (column, path into results.json) and the curve it plots
COLUMNS = {
    "nst": [TOTAL, ("content loss", ("final_losses", "content")), ("style loss", ("final_losses", "style")),
            *EVAL_COLUMNS],
    "gan": [("Frechet distance", ("frechet_distance", "final")), ("floor", ("frechet_distance", "floor")),
            *((name, ("sample_metrics", "final", name)) for name in ("precision", "recall", "density", "coverage")),
            ("class accuracy", ("sample_metrics", "final", "class_accuracy"))],  # conditional runs only
}
CURVES = {"nst": "loss/total", "gan": "val/frechet_distance", "feedforward": "train/total"}
TRADEOFF = (("eval", "content"), ("eval", "style"))  # the trade-off plot's axes: content kept (x), style taken (y)
# What a run's total loss depends on besides its picture: the objective (its terms with their weights, style loss
# and layers), the feature network, the images and their size, colour preservation, the style's scale, and the
# held-out photos of a feed-forward run. Runs that agree on all of these optimised one objective.
OBJECTIVE_KEYS = ("objective", "model", "content", "style", "style_blend", "masks", "image_size", "preserve_color",
                  "style_scale", "photos")
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]  # Tableau 10: a run's colour in every table, curve and trade-off plot
TILE = 192  # px, the long side of each contact-sheet image


@dataclass
class Run:
    directory: Path
    results: dict[str, Any]
    overrides: list[str]
    label: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # its config.yaml ({} when it has none)

    @property
    def task(self) -> str:
        return self.results.get("task", "nst")


def run_color(index: int) -> str:
    """The colour of the `index`-th run, the same in every plot and on the page."""
    return PALETTE[index % len(PALETTE)]


MAX_DEPTH = 4  # folders below the one given where runs are looked for: outputs/multiruns/<date>/<time>/<job>
OWN_FOLDERS = {"wandb", "csv", "checkpoints", "intermediate"}  # a run's own subfolders, which hold no runs
MISSING = object()  # a key the config does not have
TASK_NAMES = {"nst": "style transfer", "gan": "GAN", "feedforward": "feed-forward"}  # as tables and pages name them


@dataclass
class Folder:
    """What a directory given to compare.py or dashboard.py holds: one run, the runs of one sweep (a multirun, or a
    batched sweep), or a folder of runs that are not one sweep (a day's outputs/runs/<date>); the runs running now
    among them (status `running`), and the jobs that started and stopped without writing results.json."""

    directory: Path
    runs: list[Run]
    unfinished: list[Path]
    kind: str  # "run", "sweep" or "folder"

    def sections(self) -> list[list[Run]]:
        """The runs by task, in the order the tasks first appear: each task's runs are compared by its own rule."""
        tasks = list(dict.fromkeys(run.task for run in self.runs))
        return [[run for run in self.runs if run.task == task] for task in tasks]

    def describe(self) -> str:
        """`sweep of 4 runs, 1 running`, `one run`, `folder of 7 runs (not one sweep): 5 style transfer, 2 GAN`."""
        running = sum(run.results.get("status") == "running" for run in self.runs)
        runs = plural(len(self.runs), "run") + (f", {running} running" if running else "")
        what = {"run": "one run" + (", running" if running else ""), "sweep": f"sweep of {runs}",
                "folder": f"folder of {runs}" + " (not one sweep)" * (len(self.runs) > 1)}[self.kind]
        sections = self.sections()
        if len(sections) > 1:
            what += ": " + ", ".join(f"{len(runs)} {task_name(runs[0].task)}" for runs in sections)
        return what

    def notes(self) -> list[str]:
        """What the console says first: what the directory holds, then each job skipped."""
        return [f"{self.describe()}: {self.directory}",
                *(f"skipped {job}: no results.json (the job did not finish)" for job in self.unfinished)]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def task_name(task: str) -> str:
    return TASK_NAMES.get(task, task)


def run_folders(path: Path) -> tuple[list[Path], list[tuple[Path, bool]]]:
    """(the directories with results.json, [(a started job without one, whether it is running)]) at most MAX_DEPTH
    levels below `path`. A job started when Hydra wrote its `.hydra/`; a folder whose subfolders hold runs (a batched
    sweep's) is not one itself, and its lock covers them (a batch's elements run while it holds it)."""
    finished: list[Path] = []
    started: list[tuple[Path, bool]] = []

    def visit(directory: Path, depth: int, locked_above: bool) -> bool:
        if (directory / "results.json").is_file():
            finished.append(directory)
            return True
        locked = locked_above or is_running(directory)
        found = False
        if depth < MAX_DEPTH:
            for child in sorted((p for p in directory.iterdir() if p.is_dir()), key=lambda p: in_order(p.name)):
                if not child.name.startswith(".") and child.name not in OWN_FOLDERS:
                    found = visit(child, depth + 1, locked) or found
        if not found and (directory / ".hydra").is_dir():
            started.append((directory, locked))
            return True
        return found

    visit(path, 0, False)
    return finished, started


def in_order(name: str) -> tuple[int, str]:
    """A folder's sort key: jobs by number (2 before 10), then dated and other folders by name."""
    return (0, f"{int(name):012d}") if name.isdigit() else (1, name)


def read_run(directory: Path, running: bool) -> Run:
    """The run in `directory`, its overrides with the values it ran with (`current_overrides`); a run being written
    now has status `running` (a resumed run keeps its earlier numbers until it ends)."""
    overrides_file = directory / ".hydra" / "overrides.yaml"
    overrides = (yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None) or []
    config = read_yaml(directory / "config.yaml")
    results = read_results(directory / "results.json")
    if running:
        task = results.get("task") or config.get("task") or read_yaml(directory / ".hydra" / "config.yaml").get("task")
        results = {**results, "status": "running", "task": task or "nst"}
        results.pop("error", None)
    return Run(directory, results, current_overrides(overrides, config), config=config)


def read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}


def read_folder(path: Path) -> Folder:
    """The runs under `path`: the run itself, or those up to MAX_DEPTH folders down, each labelled by the settings
    that differ among its task's runs. The folder is a sweep when it holds Hydra's multirun.yaml or all its runs
    record one sweep group (`sweep.group` of config.yaml: a multirun's jobs, a batched sweep's elements)."""
    if not path.is_dir():
        raise UserInputError(f"{path} is not a directory; give a run, a sweep or a folder of runs "
                             "(outputs/multiruns/<date>/<time>, outputs/runs/<date>)")
    finished, started = run_folders(path)
    running = {directory for directory, locked in started if locked}
    directories = sorted([*finished, *running], key=lambda p: [in_order(part) for part in p.relative_to(path).parts])
    if not directories:
        stopped = f" ({plural(len(started), 'job')} started and stopped without one)" if started else ""
        raise UserInputError(f"no results.json in {path} or up to {MAX_DEPTH} folders below it{stopped}; give a run, "
                             "a sweep or a folder of runs")
    runs = [read_run(directory, directory in running or is_running(directory)) for directory in directories]
    groups = {(run.config.get("sweep") or {}).get("group") for run in runs}
    if directories == [path]:
        kind = "run"
    elif (path / "multirun.yaml").is_file() or (len(groups) == 1 and None not in groups):
        kind = "sweep"
    else:
        kind = "folder"
    folder = Folder(path, runs, [directory for directory, locked in started if not locked], kind)
    for section in folder.sections():
        label_runs(section)
    return folder


def find_runs(path: Path) -> list[Run]:
    """The runs under `path` (`read_folder`)."""
    return read_folder(path).runs


def current_overrides(overrides: list[str], config: dict[str, Any]) -> list[str]:
    """The command line's overrides with the values the run has now in its config.yaml: a resume
    (`resume=<dir> iterations=60`) changes config.yaml, while .hydra/overrides.yaml keeps the first command's
    `iterations=2000`. A config group's choice is read from `choices`; an override the config cannot answer (a
    deletion, a group without `choices`) stays as it was given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    current = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException:
            current.append(text)
            continue
        key, now = override.key_or_group, config
        for part in ["choices", key] if key in (config.get("choices") or {}) else key.split("."):
            now = now.get(part, MISSING) if isinstance(now, dict) else MISSING
        plain = not (override.is_delete() or override.is_sweep_override() or override.package)
        if plain and now is not MISSING and not isinstance(now, dict) and now != override.value():
            text = f"{text.split('=', 1)[0]}={override_text(now)}"
        current.append(text)
    return current


def override_text(value: Any) -> str:
    """A value as Hydra's command line spells it (`true`, `null`, `[1,2]`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(override_text, value)) + "]"
    return "null" if value is None else str(value)


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


def short(value: str) -> str:
    """A number of more than 6 significant digits (an Optuna trial's 0.49501595537331966) to 4; anything else,
    1000000.0 among them, as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    digits = value.lower().split("e")[0].lstrip("+-").replace(".", "").strip("0")
    return f"{number:.4g}" if len(digits) > 6 else value


def label_runs(runs: list[Run]) -> None:
    """Label each run by the overrides whose values differ between the runs (all of them for one run)."""
    differing = swept_keys(runs)
    for run in runs:
        values = override_values(run)
        run.label = ",".join(f"{k}={short(values[k])}" for k in differing if k in values) or run.directory.name


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty dict stays a value."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class Ranking:
    """What the runs are ranked by (lower is better) and why: a column of the table and the W&B summary key
    of the same number, or none of them when no number compares the runs."""

    column: str | None
    path: tuple[str, ...] | None
    metric: str | None
    reason: str


def objective_differences(runs: list[Run]) -> list[str] | None:
    """The settings of OBJECTIVE_KEYS (flattened config.yaml keys) whose values differ between the runs; None
    when a run has no config.yaml to tell."""
    if any(not run.config for run in runs):
        return None
    settings = [flatten({key: run.config.get(key) for key in OBJECTIVE_KEYS}) for run in runs]
    keys = sorted(set().union(*settings))
    return [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]


def ranking(runs: list[Run]) -> Ranking:
    """Total loss where every run optimised one objective (OBJECTIVE_KEYS agree); else the judge's score, which
    measures every run alike; else nothing (runs with different objectives and no judge). GANs: the Frechet
    distance, one metric for every run. Runs still running are left out: they are not ranked yet."""
    if len(runs) < 2:
        return Ranking(None, None, None, "One run: nothing to rank.")
    if len(finished := [run for run in runs if run.results.get("status") != "running"]) < 2:
        return Ranking(None, None, None, f"{len(finished)} of {len(runs)} runs finished: nothing to rank yet.")
    runs = finished
    if runs[0].task == "gan":
        return Ranking("Frechet distance", ("frechet_distance", "final"), "val/frechet_distance",
                       "Ranked by the final Frechet distance (lower is better), one metric for every run.")
    differing = objective_differences(runs)
    if differing == []:
        return Ranking(*TOTAL, "final/total", "Ranked by total loss (lower is better): every run optimised the same "
                       "objective (terms, weights, style loss, layers, network, images, size, colour, style scale).")
    if differing is None:
        why = "the runs' objectives are unknown (a run has no config.yaml)"
    else:
        shown = ", ".join(differing[:4]) + (f" and {len(differing) - 4} more" if len(differing) > 4 else "")
        why = f"the runs' objectives differ ({shown})"
    if any(finite(lookup(run.results, SCORE[1])) for run in runs):
        return Ranking(*SCORE, "eval/score", f"Ranked by the judge's score (hypot(content, style), lower is better): "
                       f"{why}, so their total losses measure different things.")
    return Ranking(None, None, None, f"Not ranked: {why}, so their total losses measure different things, and no "
                   "run was judged (judge=none); compare the pictures.")


def ranks(runs: list[Run], rank_by: Ranking) -> list[int | None]:
    """Each run's place by `rank_by` (1 = best) among the completed runs with a finite value; None for the others,
    and for every run when fewer than two can be ranked."""
    values = {i: lookup(run.results, rank_by.path) for i, run in enumerate(runs)
              if rank_by.path is not None and run.results.get("status") == "completed"}
    ranked = sorted((i for i, v in values.items() if finite(v)), key=lambda i: values[i])
    places = {i: place for place, i in enumerate(ranked, start=1)} if len(ranked) > 1 else {}
    return [places.get(i) for i in range(len(runs))]


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """The indices of the points that no other point beats, every axis minimised: a point is beaten by one that is
    at most as large on every axis and smaller on one. Equal points are all on the front."""
    def beats(q: Sequence[float], p: Sequence[float]) -> bool:
        return all(b <= a for a, b in zip(p, q)) and any(b < a for a, b in zip(p, q))

    return [i for i, p in enumerate(points) if not any(beats(q, p) for q in points)]


def tradeoff_points(runs: list[Run]) -> dict[int, tuple[float, float]]:
    """{run index: (eval content, eval style)} of the completed runs the judge scored."""
    points = {}
    for i, run in enumerate(runs):
        x, y = (lookup(run.results, path) for path in TRADEOFF)
        if run.results.get("status") == "completed" and finite(x) and finite(y):
            points[i] = (float(x), float(y))
    return points


def on_front(runs: list[Run]) -> set[int]:
    """The indices of the judged runs on the Pareto front of (eval content, eval style)."""
    points = tradeoff_points(runs)
    indices = list(points)
    return {indices[i] for i in pareto_front(list(points.values()))}


def tradeoff_figure(points: Sequence[tuple[float, float]], labels: Sequence[str], colors: Sequence[str],
                    names: tuple[str, str] = ("eval/content (lower: more of the content kept)",
                                              "eval/style (lower: nearer the style)"),
                    size: tuple[float, float] = (7, 4.5), ids: Sequence[str] | None = None) -> Figure:
    """The trade-off plane of two minimised numbers (by default the judge's content lost against style missed):
    one point per run in its colour, labelled, and the Pareto front (`pareto_front`) as a step line through the
    points no other beats on both axes. Better is lower left. `ids` name each point's SVG group."""
    figure = Figure(figsize=size)  # no pyplot: no display or global state needed
    axes = figure.subplots()
    front = sorted(points[i] for i in pareto_front(points))
    if len(front) > 1:
        xs, ys = zip(*front)
        axes.step(xs, ys, where="post", color="#66788a", linewidth=1.2, linestyle="--", zorder=1, label="Pareto front")
    front_set = set(front)
    for index, ((x, y), label, color) in enumerate(zip(points, labels, colors)):
        axes.scatter([x], [y], s=60, color=color, zorder=2, edgecolors="#1f2933" if (x, y) in front_set else color,
                     linewidths=1.2, gid=ids[index] if ids else None)
        lines = label_lines(label, width=34)  # every other label below its point: neighbours overlap less
        axes.annotate("\n".join(lines), (x, y), xytext=(6, 4 if index % 2 == 0 else -4 - 9 * len(lines)),
                      textcoords="offset points", fontsize=7, color="#1f2933")
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    axes.grid(True, color="#e3e8ee", linewidth=0.8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(0.15)
    if axes.lines:
        axes.legend(fontsize=8, frameon=False, loc="upper right")
    figure.tight_layout()
    return figure


def runs_tradeoff(runs: list[Run], size: tuple[float, float] = (7, 4.5), ids: str = "run") -> Figure | None:
    """The judged runs on the trade-off plane, each labelled and in its colour, its point the SVG group
    `<ids>-<index>`; None when no run was judged."""
    points = tradeoff_points(runs)
    if not points:
        return None
    return tradeoff_figure(list(points.values()), [runs[i].label for i in points], [run_color(i) for i in points],
                           size=size, ids=[f"{ids}-{i}" for i in points])


def tradeoff(runs: list[Run], path: Path) -> bool:
    """tradeoff.png of the judged runs; False, and no such file, when no run was judged."""
    figure = runs_tradeoff(runs)
    if figure is None:
        path.unlink(missing_ok=True)  # an earlier comparison's plot would show other runs
        return False
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))
    return True


def tradeoff_curves(runs: list[Run], by: str, along: str, panels: str | None, path: Path) -> None:
    """tradeoff_curves.png: the judged runs on the trade-off plane, one line per value of the override `by`
    (e.g. style_loss) through its runs in the order of the override `along` (e.g. style_weight_scale, by
    value), one panel per value of `panels` (e.g. content) or one panel; the first point of each line marked
    with its `along` value. For sweeps that trace how a setting moves along the trade-off."""
    points = tradeoff_points(runs)
    values = {i: override_values(runs[i]) for i in points}
    missing = sorted({key for key in (by, along, panels) if key and not any(key in v for v in values.values())})
    if missing:
        raise UserInputError(f"no judged run of {len(runs)} has the override(s) {missing}; name swept keys, "
                             f"e.g. {', '.join(swept_keys(runs)) or 'style_weight'}")
    groups = sorted({v.get(panels, "") for v in values.values()}) if panels else [""]
    lines = list(dict.fromkeys(v.get(by, "") for v in values.values()))
    figure = Figure(figsize=(5.2 * len(groups), 4.6))
    for axes, group in zip(figure.subplots(1, len(groups), squeeze=False)[0], groups):
        for k, line in enumerate(lines):
            members = sorted((i for i, v in values.items() if v.get(by) == line and v.get(panels, "") == group),
                             key=lambda i: sortable(values[i].get(along, "")))
            if members:
                xs, ys = zip(*(points[i] for i in members))
                axes.plot(xs, ys, marker="o", color=run_color(k), label=f"{by}={line}")
                axes.annotate(f"{along}={values[members[0]].get(along)}", (xs[0], ys[0]), xytext=(4, 4),
                              textcoords="offset points", fontsize=6, color=run_color(k))
        axes.set_title(f"{panels}={group}" if panels else "", fontsize=9)
        axes.set_xlabel("eval/content (lower: more of the content kept)")
        axes.set_ylabel("eval/style (lower: nearer the style)")
        axes.grid(True, color="#e3e8ee", linewidth=0.8)
        axes.spines[["top", "right"]].set_visible(False)
        axes.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))


def sortable(value: str) -> tuple[int, float | str]:
    """An override's value as a sort key: numbers by value, before any text."""
    try:
        return 0, float(value)
    except ValueError:
        return 1, value


def table(runs: list[Run], rank_by: Ranking | None = None) -> str:
    """A Markdown table: one row per run with its label, status, place, headline numbers (the best of the ranked
    one in bold with a star), whether it is on the Pareto front (judged style transfers), steps and time."""
    rank_by = rank_by or ranking(runs)
    columns = table_columns(runs[0].task, runs)
    judged = runs[0].task != "gan"
    places, front = ranks(runs, rank_by), on_front(runs)
    header = ["run", "status", "rank", *(name for name, _ in columns), *(["Pareto"] if judged else []),
              "steps", "time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, run in enumerate(runs):
        steps = run.results.get("steps", run.results.get("generator_steps"))
        cells = []
        for name, path in columns:
            cell = number(lookup(run.results, path))
            cells.append(f"**{cell}** ★" if name == rank_by.column and places[index] == 1 else cell)
        row = [f"`{run.label}`", str(run.results.get("status", "?")), str(places[index] or "-"), *cells,
               *(["yes" if index in front else "-"] if judged else []),
               str(steps if steps is not None else "-"), number(run.results.get("wall_time_s"))]
        lines.append("| " + " | ".join(row) + " |")
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


def table_columns(task: str, runs: list["Run"]) -> list[tuple[str, tuple[str, ...]]]:
    """The task's table columns that at least one of `runs` has a number for (no empty class-accuracy column in a
    sweep of unconditional GANs)."""
    return [(name, path) for name, path in COLUMNS.get(task, COLUMNS["nst"])
            if any(lookup(run.results, path) is not None for run in runs)]


def label_lines(label: str, width: int = 30, lines: int = 2) -> list[str]:
    """`label` in at most `lines` lines of `width` characters, broken after its commas (between settings)
    rather than inside a number; a setting too long for a line keeps its value (`spectral_norm=true` for
    `gan.discriminator.spectral_norm=true`, then cut from the left), and a last line that overflows ends in '...'."""
    out: list[str] = []
    for part in [p + "," for p in label.split(",")[:-1]] + [label.split(",")[-1]]:
        if out and len(out[-1]) + len(part) <= width:
            out[-1] += part
        else:
            out.append(fit_setting(part, width))
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:width - 3] + "..."
    return out


def fit_setting(setting: str, width: int) -> str:
    """`key=value` in `width` characters: the key's last dotted part, then its end, so the value is never lost."""
    if len(setting) <= width:
        return setting
    key, equals, value = setting.partition("=")
    setting = f"{key.rsplit('.', 1)[-1]}{equals}{value}"
    return setting if len(setting) <= width else "..." + setting[-(width - 3):]


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
    for index, run in enumerate(runs):
        steps, values = history(run.directory, key)
        if values and all(v > 0 and math.isfinite(v) for v in values):
            axes.plot(steps, values, label=run.label, color=run_color(index))
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    if axes.lines:
        axes.legend(fontsize=7)
    figure.tight_layout()
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))


def write_comparison(folder: Folder) -> tuple[str, list[Path]]:
    """Write comparison.md and, for each task's runs, its contact sheet, curves and (judged runs) trade-off into the
    folder; return the tables, each with what it is ranked by and why, and the files written. With runs of several
    tasks, each task has its own section and its pictures are named after it (`curves_gan.png`)."""
    path, sections = folder.directory, folder.sections()
    markdown, pictures, written = [], [], []
    for runs in sections:
        rank_by = ranking(runs)
        suffix = f"_{runs[0].task}" if len(sections) > 1 else ""
        heading = f"## {task_name(runs[0].task)}: {plural(len(runs), 'run')}\n\n" if len(sections) > 1 else ""
        markdown.append(f"{heading}{table(runs, rank_by)}\n{rank_by.reason}\n")
        names = [f"contact_sheet{suffix}.png", f"curves{suffix}.png"]
        contact_sheet(runs, path / names[0])
        curves(runs, path / names[1])
        shown = [f"![contact sheet]({names[0]})", f"![curves]({names[1]})"]
        if tradeoff(runs, path / f"tradeoff{suffix}.png"):
            names.insert(0, f"tradeoff{suffix}.png")
            shown.insert(0, "![trade-off: the judge's content against style distance, the Pareto front dashed]"
                            f"(tradeoff{suffix}.png)")
        pictures.append("\n\n".join(shown))
        written += [path / name for name in names]
    body = "\n".join(f"{text}\n{shown}\n" for text, shown in zip(markdown, pictures))
    text = f"# {path}\n\n{folder.describe()}\n\n{body}"
    write_atomic(path / "comparison.md", lambda f: f.write(text.encode()))
    return "\n".join(markdown), [path / "comparison.md", *written]


def compare(path: Path) -> str:
    """Compare the runs under `path` (`write_comparison`); return the tables with what each is ranked by and why."""
    return write_comparison(read_folder(path))[0]
