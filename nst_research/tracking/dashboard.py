"""A dashboard for a sweep, a run or a folder of runs from one command: `dashboard.html` from the run
directories, and a W&B Report.

The page needs no server and no W&B account: one self-contained HTML file with the swept settings, a
results table with each run's result image, every run's headline curve and, for judged runs, the trade-off
of the judge's content and style distances with its Pareto front; runs of different tasks get a section each.
The report is the same comparison in W&B, of the sweep's W&B group or of the runs themselves (curves on the
step axis grouped by each swept key, parallel coordinates, scatter plots, the trade-off, the result images,
the results table, a run comparer), built with wandb-workspaces.
Both rank the runs as compare.py does (`ranking`): by total loss where every run optimised one objective,
else by the judge's score. Its spec is written to `wandb_report.json` always, and saved to W&B when logged in.
Its panels name only keys that the runs' W&B logs contain (read back with `wandb leet inspect`).
"""

import base64
import html
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import wandb_workspaces.reports.v2 as wr
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from wandb_workspaces import expr
from wandb_workspaces.reports.v2 import interface

from nst_research.atomic import write_atomic
from nst_research.tracking.compare import (
    CURVES,
    Folder,
    Ranking,
    Run,
    flatten,
    history,
    label_lines,
    lookup,
    on_front,
    override_values,
    ranking,
    ranks,
    read_folder,
    run_color,
    runs_tradeoff,
    swept_keys,
    table_columns,
    task_name,
)
from nst_research.tracking.loggers import wandb_mode


@dataclass(frozen=True)
class ReportKeys:
    """The W&B keys a task's runs log that the report's panels name."""

    step: str  # the x-axis of every curve
    curves: tuple[str, ...]  # history metrics; the first is the headline, also drawn once per swept key
    final: str  # the summary metric runs are ranked by (parallel coordinates, scatter plots)
    media: str  # the result image
    table: str  # the run's one-row results table
    judge: tuple[str, ...] = ()  # the judge's summary metrics: content (x of the trade-off), style (its y), score


JUDGE_KEYS = ("eval/content", "eval/style", "eval/score")


REPORT_KEYS = {
    "nst": ReportKeys(step="trainer/global_step", curves=("loss/total", "loss/content", "loss/style", "loss/tv"),
                      final="final/total", media="result", table="results", judge=JUDGE_KEYS),
    "gan": ReportKeys(step="trainer/global_step", curves=("val/frechet_distance", "train/d_loss", "train/g_loss"),
                      final="val/frechet_distance", media="samples", table="results"),
}
OFFLINE_ENTITY = "offline"  # the report's entity when none is given and there is no login to ask


@dataclass
class WandbLog:
    """What one run logged to W&B, read back from its directory (offline or online runs alike)."""

    directories: list[Path]  # wandb/offline-run-* or wandb/run-*, oldest first (a resumed run may have several)
    run_id: str | None
    project: str | None
    config: dict[str, Any]  # flattened: {"optimizer._target_": ..., "style_weight": ...}
    keys: set[str]  # every metric, image and table key


@dataclass
class Section:
    """The runs of one task, compared by that task's rule."""

    task: str
    runs: list[Run]
    logs: list[WandbLog | None]  # one per run; None where the run has no readable W&B log
    group: str | None  # the runs' W&B group
    swept: list[str]  # the override keys whose values differ between the runs
    ranking: Ranking  # what the runs are ranked by, and why


@dataclass
class Page:
    """What the dashboard shows: the folder it was given (a run, a sweep, a folder of runs) and a section per task."""

    folder: Folder
    sections: list[Section]

    @property
    def directory(self) -> Path:
        return self.folder.directory

    @property
    def runs(self) -> list[Run]:
        return [run for section in self.sections for run in section.runs]

    @property
    def logs(self) -> list[WandbLog | None]:
        return [log for section in self.sections for log in section.logs]


def wandb_directories(run_dir: Path) -> list[Path]:
    directories = (p for p in run_dir.glob("wandb/*run-*") if p.is_dir() and any(p.glob("*.wandb")))
    return sorted(directories, key=lambda p: p.name.removeprefix("offline-"))


def read_wandb_log(run_dir: Path) -> WandbLog | None:
    """The run's W&B config and keys from its latest W&B directory, via `wandb leet inspect --summary --json`."""
    directories = wandb_directories(run_dir)
    if not directories:
        return None
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(directories[-1])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        record = json.loads(done.stdout) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError):  # an older wandb, a damaged log: no W&B keys known
        record = None
    if not isinstance(record, dict):
        return None
    return WandbLog(directories, record.get("run_id"), record.get("project") or None,
                    flatten(record.get("config") or {}), set(record.get("summary") or {}))


def run_group(run: Run) -> str | None:
    config = run.config
    return (config.get("sweep") or {}).get("group") or ((config.get("logger") or {}).get("wandb") or {}).get("group")


def load_page(path: Path) -> Page:
    """The runs under `path` (`read_folder`) by task, with their W&B logs; a UserInputError when it holds none."""
    folder = read_folder(path)
    sections = []
    for runs in folder.sections():
        groups = [g for g in map(run_group, runs) if g]
        sections.append(Section(task=runs[0].task, runs=runs, logs=[read_wandb_log(run.directory) for run in runs],
                                group=max(groups, key=groups.count) if groups else None, swept=swept_keys(runs),
                                ranking=ranking(runs)))
    return Page(folder, sections)


def config_key(override: str, configs: list[dict[str, Any]]) -> str | None:
    """The W&B config key that records an override: the key itself or, for a config group choice
    (`gan=fc`, `optimizer=adam`), its `name`, its `_target_` or its first setting that differs between runs."""
    key = override.lstrip("+~")
    present = set().union(*configs)
    if key in present:
        return key
    under = sorted(k for k in present if k.startswith(f"{key}."))
    differing = [k for k in under if len({repr(c.get(k)) for c in configs}) > 1] or under
    return next((k for k in (f"{key}.name", f"{key}._target_", *differing) if k in differing), None)


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- the W&B report ---------------------------------------------------------------------------------------


@contextmanager
def without_server() -> Iterator[None]:
    """Build a report with no W&B server: the two look-ups wandb-workspaces makes (the API object and each
    Runset's project id) answer locally, as the library's own tests patch them."""
    offline_project = {"project": {"internalId": "offline"}}
    with mock.patch.multiple(interface, _get_api=lambda: None, execute_graphql=lambda *args, **kwargs: offline_project):
        yield


def build_report(page: Page, entity: str | None, project: str) -> tuple[wr.Report, list[str]]:
    """The W&B Report of the page's runs, a part per task when they are of several, and the keys of REPORT_KEYS its
    panels leave out because no run logs them. Without `entity` the report asks the W&B API for the default entity
    (it needs a login)."""
    folder, several, name = page.folder, len(page.sections) > 1, page.directory.name
    group = page.sections[0].group if not several else None
    title = {"sweep": f"Sweep {group or name}", "run": f"Run {name}"}.get(folder.kind, f"Runs in {name}")
    report = wr.Report(project=project, title=title, description="Made by scripts/dashboard.py",
                       **({"entity": entity} if entity else {}))
    blocks: list[Any] = [wr.P(f"{folder.describe()}: {page.directory}.")] if several else []
    missing: list[str] = []
    for section in page.sections:
        if several:
            blocks.append(wr.H1(f"{capitalised(task_name(section.task))} runs"))
        section_blocks, section_missing = report_section(section, folder, report.entity, project)
        blocks += section_blocks
        missing += [key for key in section_missing if key not in missing]
    report.blocks = blocks
    return report, missing


def report_section(section: Section, folder: Folder, entity: str, project: str) -> tuple[list[Any], list[str]]:
    """The report's blocks for one task's runs, and the keys of REPORT_KEYS they leave out because no run logs them.
    A sweep's panels show its W&B group; a run's or a folder's, the runs themselves (by W&B id)."""
    keys = REPORT_KEYS.get(section.task, REPORT_KEYS["nst"])
    logs = [log for log in section.logs if log is not None]
    configs = [log.config for log in logs] or [flatten(r.config) for r in section.runs if r.config]
    available = set().union(*(log.keys | set(log.config) for log in logs)) if logs else None
    wanted = [keys.step, *keys.curves, keys.final, *keys.judge, keys.media, keys.table]
    missing = [key for key in wanted if available is not None and key not in available]
    if available is None and not any(run.results.get("eval") for run in section.runs):  # no log to read: results.json
        missing += keys.judge
    settings = [k for k in (config_key(o, configs) for o in section.swept) if k is not None]
    judged = [key for key in keys.judge if key not in missing]
    ranked = section.ranking.metric  # the runs' ranking, where the logs hold its number
    final = ranked if ranked in (keys.final, *judged) else keys.final

    ids = [log.run_id for log in logs if log.run_id]
    if section.group and (folder.kind == "sweep" or not ids):
        filters = [expr.Metric("Group") == section.group]
    else:
        filters = [expr.Metric("ID").isin(ids)]

    def grid(panels: list[Any]) -> wr.PanelGrid:
        runset = wr.Runset(entity=entity, project=project, name=section.group or "runs", filters=filters)
        return wr.PanelGrid(runsets=[runset], panels=arranged(panels))

    group = f" (W&B group {section.group})" if section.group and folder.kind == "sweep" else ""
    blocks: list[Any] = [wr.P(f"{len(section.runs)} {task_name(section.task)} runs of "
                              f"{folder.directory}{group}; swept: {', '.join(section.swept) or 'nothing'}.")]
    if curves := curve_panels(keys, missing, settings):
        blocks += [wr.H2("Curves"), grid(curves)]
    if final not in missing and settings:
        blocks += [wr.H2("Settings against the result"), wr.P(section.ranking.reason),
                   grid(settings_panels(final, settings, configs, judged, keys.final))]
    if keys.judge and set(keys.judge[:2]) <= set(judged):
        x, y = keys.judge[:2]
        blocks += [wr.H2("Trade-off"), wr.P("The judge's content distance (x) against its style distance (y), one "
                                            "point per run: lower left is better."),
                   grid([wr.ScatterPlot(title=f"trade-off: {x} against {y}", x=wr.SummaryMetric(x),
                                        y=wr.SummaryMetric(y), layout=wr.Layout(w=12, h=8))])]
    blocks += [wr.H2("Results"), grid(result_panels(keys, missing))]
    return blocks, missing


def arranged(panels: list[Any]) -> list[Any]:
    """Place the panels left to right in W&B's 24-column grid, starting a row when one is full (the
    library's own placement lets panels of different sizes overlap)."""
    x = y = height = 0
    for panel in panels:
        w, h = panel.layout.w, panel.layout.h
        if x + w > 24:
            x, y, height = 0, y + height, 0
        panel.layout = wr.Layout(x=x, y=y, w=w, h=h)
        x, height = x + w, max(height, h)
    return panels


def curve_panels(keys: ReportKeys, missing: list[str], settings: list[str]) -> list[Any]:
    """The headline curve of every run, then grouped by each swept config key; each other curve on its own."""
    step = keys.step if keys.step not in missing else "Step"  # W&B's own step when the run's is not logged
    curves = [key for key in keys.curves if key not in missing]
    if not curves:
        return []
    headline = [wr.LinePlot(title=curves[0], x=step, y=[curves[0]], log_y=True, layout=wr.Layout(w=12, h=8))]
    headline += [wr.LinePlot(title=f"{curves[0]} by {k}", x=step, y=[curves[0]], log_y=True, groupby=wr.Config(k),
                             groupby_aggfunc="mean", groupby_rangefunc="minmax", layout=wr.Layout(w=12, h=8))
                 for k in settings]
    return headline + [wr.LinePlot(title=key, x=step, y=[key], layout=wr.Layout(w=8, h=6)) for key in curves[1:]]


def settings_panels(final: str, settings: list[str], configs: list[dict[str, Any]], judged: list[str],
                    loss: str) -> list[Any]:
    """Parallel coordinates over the swept config keys, the judge's numbers and the metric runs are ranked by
    (`final`; the task's own `loss` only when that is what ranks them); a scatter of `final` against each numeric
    key. The judge's numbers are relative distances near 0 to 1, on linear axes."""
    metric = wr.SummaryMetric(final)
    columns = [*(wr.ParallelCoordinatesPlotColumn(wr.Config(k)) for k in settings),
               *(wr.ParallelCoordinatesPlotColumn(wr.SummaryMetric(k)) for k in judged)]
    if final not in judged:
        columns.append(wr.ParallelCoordinatesPlotColumn(metric, log=final == loss))
    panels: list[Any] = [wr.ParallelCoordinatesPlot(title=f"settings and {', '.join(dict.fromkeys([*judged, final]))}",
                                                     columns=columns, layout=wr.Layout(w=24, h=8))]
    for k in settings:
        values = [c.get(k) for c in configs]
        if all(is_number(v) for v in values):
            panels.append(wr.ScatterPlot(title=f"{final} against {k}", x=wr.Config(k), y=metric, log_y=final == loss,
                                         log_x=spans_decades(values), layout=wr.Layout(w=12, h=8)))
    return panels


def result_panels(keys: ReportKeys, missing: list[str]) -> list[Any]:
    """The result images with the step slider, the runs' results tables merged into one, and a run comparer."""
    panels: list[Any] = []
    if keys.media not in missing:
        panels.append(wr.MediaBrowser(title="results", media_keys=[keys.media], gallery_axis="step",
                                      layout=wr.Layout(w=24, h=10)))
    if keys.table not in missing:
        panels.append(wr.WeavePanelSummaryTable(table_name=keys.table, layout=wr.Layout(w=24, h=10)))
    return panels + [wr.RunComparer(diff_only="split", layout=wr.Layout(w=24, h=10))]


def spans_decades(values: list[Any], decades: int = 2) -> bool:
    """Whether positive numbers span `decades` orders of magnitude or more (a log axis reads them better)."""
    numbers = [v for v in values if is_number(v)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 10**decades


def report_spec(report: wr.Report, offline: bool) -> str:
    """The report as the JSON W&B saves (`Report.save` uploads its `spec` part)."""
    with without_server() if offline else nullcontext():
        return report._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1)


def sync(page: Page) -> None:
    """`wandb sync` each run's offline W&B directories (a resumed run's several in order)."""
    for log in page.logs:
        for directory in (log.directories if log else []):
            if directory.name.startswith("offline-run-"):
                subprocess.run([sys.executable, "-m", "wandb", "sync", str(directory)], check=False)


# --- the HTML page ----------------------------------------------------------------------------------------

THUMBNAIL = 150  # px, the long side of a result image in the table

STYLE = """
:root { --ink: #1f2933; --muted: #66788a; --line: #e3e8ee; --panel: #ffffff; --bg: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 32px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; letter-spacing: -0.01em; }
header .meta { margin: 0; color: var(--muted); }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef2f6;
       padding: 1px 5px; border-radius: 4px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; margin-top: 22px;
          padding: 18px 22px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.04); }
h2 { margin: 0 0 12px; font-size: 17px; }
.settings { display: grid; grid-template-columns: max-content 1fr; gap: 8px 18px; margin: 0; align-items: baseline; }
.settings dt { font-weight: 600; }
.settings dd { margin: 0; }
.chip { display: inline-block; margin: 0 6px 4px 0; padding: 1px 9px; border-radius: 999px; background: #e8eef6;
        font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.fixed { color: var(--muted); font-size: 13px; margin: 12px 0 0; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 11px; text-transform: uppercase; letter-spacing: 0.02em; color: var(--muted);
     font-weight: 600; padding: 6px 6px; border-bottom: 2px solid var(--line); }
td { padding: 8px 6px; border-bottom: 1px solid var(--line); vertical-align: middle; }
.wide { overflow-x: auto; }
tr.run:hover td { background: #fafbfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; font-size: 14px; }
td.best { font-weight: 700; }
td.best::after { content: " \\2605"; color: #d4a017; }
.label { display: flex; align-items: center; gap: 10px; }
.dot { flex: none; width: 12px; height: 12px; border-radius: 50%; }
.label .job { color: var(--muted); font-size: 12px; }
.pareto { display: inline-block; margin-left: 8px; padding: 0 7px; border-radius: 999px; font-size: 11px;
          font-weight: 600; background: #e6eef8; color: #2f5f8f; }
.ranking { margin: 0 0 12px; }
.label div div { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.status { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.status.completed { background: #e3f4e6; color: #1e7b34; }
.status.failed { background: #fde5e4; color: #b42318; }
.status.interrupted { background: #fff1d6; color: #9a6200; }
.status.diverged { background: #efe5fa; color: #6b3fa0; }
.status.running { background: #e0efff; color: #1d5fa0; }
h2.task { margin: 34px 0 -6px; font-size: 21px; }
.error { color: #b42318; font-size: 12px; max-width: 260px; margin-top: 4px; overflow-wrap: anywhere; }
td.image { width: 1%; }
td.image img { display: block; border-radius: 6px; border: 1px solid var(--line); background: #fff; }
img.pixelated { image-rendering: pixelated; }
.noimage { width: 96px; height: 64px; display: flex; align-items: center; justify-content: center; color: var(--muted);
           font-size: 12px; border: 1px dashed var(--line); border-radius: 6px; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; }
.note { color: var(--muted); font-size: 13px; }
footer { margin-top: 22px; color: var(--muted); font-size: 13px; }
footer a { color: #2f5f8f; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any) -> str:
    return f"{value:.4g}" if is_number(value) and math.isfinite(value) else "–"


def image_cell(path: Path | None) -> str:
    """The image as a data URI, fitted in a THUMBNAIL square (small images are enlarged without blur)."""
    if path is None or not path.is_file():
        return '<div class="noimage">no image</div>'
    with Image.open(path) as image:
        width, height = image.size
    scale = THUMBNAIL / max(width, height)
    pixelated = ' class="pixelated"' if scale > 1.5 else ""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<img{pixelated} src="data:image/png;base64,{data}" width="{round(width * scale)}" '
            f'height="{round(height * scale)}" alt="{esc(path.name)}">')


def result_image(run: Run) -> Path | None:
    name = run.results.get("result")
    return run.directory / name if name else None


def curves_svg(section: Section) -> str:
    """Every run's headline curve from its CSV log, as inline SVG (matplotlib's Figure API: no display needed)."""
    key = CURVES.get(section.task, CURVES["nst"])
    figure = Figure(figsize=(11, 4.4))
    axes = figure.subplots()
    for index, run in enumerate(section.runs):
        steps, values = history(run.directory, key)
        if values and all(v > 0 and math.isfinite(v) for v in values):
            label = "\n".join(label_lines(run.label, width=40, lines=3))  # a narrow legend leaves room for the plot
            axes.plot(steps, values, color=run_color(index), linewidth=1.8, label=label,
                      marker="o" if len(values) < 12 else None, markersize=3)
    if not axes.lines:
        return f'<p class="note">No run logged {esc(key)} in csv/metrics.csv.</p>'
    if spans_decades([v for line in axes.lines for v in line.get_ydata()], decades=1):
        axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    axes.grid(True, which="major", color="#e3e8ee", linewidth=0.8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return inline_svg(figure)


def inline_svg(figure: Figure) -> str:
    """The figure as an <svg> element, its text kept as text (searchable and selectable, not outlines)."""
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def tradeoff_svg(section: Section, ids: str = "run") -> str | None:
    """The judged runs on the trade-off plane with the Pareto front (`runs_tradeoff`), each point the SVG group
    `<ids>-<index>`; None when none was judged."""
    figure = runs_tradeoff(section.runs, size=(11, 4.4), ids=ids)
    return None if figure is None else inline_svg(figure)


def results_table(section: Section, directory: Path) -> str:
    """One row per run: its settings in its colour, its folder under `directory`, status, numbers (a star on the best
    of the ranked one), a mark on the Pareto front of the judge's numbers, steps, time and result image."""
    columns = table_columns(section.task, section.runs)
    places, front = ranks(section.runs, section.ranking), on_front(section.runs)
    header = "".join(f'<th class="num">{esc(name)}</th>' for name, _ in columns)
    rows = []
    for index, run in enumerate(section.runs):
        values = override_values(run)
        settings = "".join(f"<div>{esc(k)}={esc(values[k])}</div>" for k in section.swept if k in values)
        deep = run.directory.parent != directory and run.directory != directory  # in a folder of runs: its path
        job = run.directory.relative_to(directory).as_posix() if deep else f"job {run.directory.name}"
        status = str(run.results.get("status", "unknown"))
        error = run.results.get("error")
        cells = []
        for name, path in columns:
            marked = name == section.ranking.column and places[index] == 1
            cells.append(f'<td class="num{" best" if marked else ""}">{number(lookup(run.results, path))}</td>')
        pareto = '<span class="pareto" title="on the Pareto front">Pareto</span>' if index in front else ""
        steps = run.results.get("steps", run.results.get("generator_steps"))
        rows.append(
            f'<tr class="run"><td><div class="label"><span class="dot" '
            f'style="background:{run_color(index)}"></span><div>{settings or esc(run.label)}'
            f'<span class="job">{esc(job)}</span>{pareto}</div></div></td>'
            f'<td><span class="status {esc(status)}">{esc(status)}</span>'
            + (f'<div class="error">{esc(error)}</div>' if error else "") + "</td>"
            + "".join(cells)
            + f'<td class="num">{esc(steps) if steps is not None else "–"}</td>'
            f'<td class="num">{number(run.results.get("wall_time_s"))}</td>'
            f'<td class="image">{image_cell(result_image(run))}</td></tr>')
    return (f'<table><thead><tr><th>run</th><th>status</th>{header}<th class="num">steps</th>'
            f'<th class="num">time (s)</th><th>result</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def settings_list(section: Section) -> str:
    parsed = [override_values(run) for run in section.runs]
    items = []
    for key in section.swept:
        values = list(dict.fromkeys(p[key] for p in parsed if key in p))
        items.append(f"<dt>{esc(key)}</dt><dd>{''.join(f'<span class=chip>{esc(v)}</span>' for v in values)}</dd>")
    shared = [f"{k}={v}" for k, v in parsed[0].items()
              if k not in section.swept and all(p.get(k) == v for p in parsed)] if len(parsed) > 1 else []
    fixed = f'<p class="fixed">Same in every run: <code>{esc(" ".join(shared))}</code></p>' if shared else ""
    return f'<dl class="settings">{"".join(items)}</dl>{fixed}' if items else fixed or "<p>No overrides.</p>"


def section_html(section: Section, page: Page) -> str:
    """One task's runs: a heading when the page has several tasks, then their settings, results, trade-off and
    curve, ranked by the task's own rule."""
    several = len(page.sections) > 1
    curve = CURVES.get(section.task, CURVES["nst"])
    tradeoff = tradeoff_svg(section, ids=f"{section.task}-run" if several else "run")
    plane = ("" if tradeoff is None else '<section><h2>Trade-off: the judge\'s content against style distance</h2>'
             '<p class="note">One point per judged run in its colour; lower left is better. The dashed steps join '
             'the Pareto front, the runs no other run beats on both axes (ringed; marked in the table).</p>'
             f"<figure>{tradeoff}</figure></section>")
    heading = (f'<h2 class="task">{esc(capitalised(task_name(section.task)))} · '
               f'{len(section.runs)} run{"s" if len(section.runs) > 1 else ""}</h2>' if several else "")
    return f"""{heading}
<section><h2>Settings</h2>{settings_list(section)}</section>
<section><h2>Results</h2><p class="ranking">{esc(section.ranking.reason)}</p>
<div class="wide">{results_table(section, page.directory)}</div></section>
{plane}
<section><h2>{esc(curve)}</h2><figure>{curves_svg(section)}</figure></section>"""


def dashboard_html(page: Page, offline_note: str, url: str | None = None) -> str:
    """The page; its title says what the folder holds (a sweep, a run, a folder of runs), and its footer links the
    saved W&B report, or says why there is none (`offline_note`)."""
    folder, name = page.folder, page.directory.name
    statuses = [str(run.results.get("status", "unknown")) for run in page.runs]
    counts = "".join(f" · {statuses.count(s)} {s}" for s in dict.fromkeys(statuses) if s != "running")
    tasks = {section.task for section in page.sections}
    task = capitalised(task_name(next(iter(tasks)))) + " " if len(tasks) == 1 else ""
    title = {"sweep": f"{task}sweep", "run": f"{task}run"}.get(folder.kind, "Runs")
    group = page.sections[0].group if folder.kind == "sweep" and len(page.sections) == 1 else None
    group_html = f" · W&B group <code>{esc(group)}</code>" if group else ""
    skipped = (f'<p class="note">Skipped (no results.json, not running): '
               f'{esc(", ".join(p.relative_to(page.directory).as_posix() for p in folder.unfinished))}</p>'
               if folder.unfinished else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(name)}: {esc(title)} dashboard</title><style>{STYLE}</style></head>
<body><main>
<header><h1>{esc(title)} · {esc(name)}</h1>
<p class="meta">{esc(folder.describe())}{esc(counts)}{group_html} · <code>{esc(page.directory.resolve())}</code></p>
{skipped}</header>
{"".join(section_html(section, page) for section in page.sections)}
<footer>Made by <code>python scripts/dashboard.py {esc(page.directory)}</code> from the run directories.
{f'W&B report: <a href="{esc(url)}">{esc(url)}</a>' if url else esc(offline_note)}</footer>
</main></body></html>
"""


def write_dashboard(directory: Path, html_text: str, spec: str) -> tuple[Path, Path]:
    page, report = directory / "dashboard.html", directory / "wandb_report.json"
    write_atomic(page, lambda f: f.write(html_text.encode()))
    write_atomic(report, lambda f: f.write(spec.encode()))
    return page, report


# --- the command ------------------------------------------------------------------------------------------


def dashboard(path: Path, *, sync_runs: bool = False, entity: str | None = None,
              project: str | None = None) -> tuple[Path, Path, str | None]:
    """Write dashboard.html and wandb_report.json into `path` (a sweep, a run or a folder of runs); save the report
    to W&B when logged in (after `wandb sync` of the runs with `sync_runs`). Says first what the folder holds.
    Returns the two paths and the report's URL."""
    page = load_page(path)
    print("\n".join(page.folder.notes()))
    for section in page.sections:
        print(f"{capitalised(task_name(section.task))}: " * (len(page.sections) > 1) + section.ranking.reason)
    project = (project or os.environ.get("WANDB_PROJECT")
               or next((log.project for log in page.logs if log and log.project), None) or "nst-research")
    entity = entity or os.environ.get("WANDB_ENTITY")
    mode, reason = wandb_mode()
    url = None
    if mode == "online":
        if sync_runs:
            sync(page)
        try:
            report, missing = build_report(page, entity, project)
            spec = report_spec(report, offline=False)
            report.save()
            url = report.url
        except Exception as error:  # the page and the spec are still written
            reason = f"saving the report failed ({type(error).__name__}: {error})"
    if url is None:
        report, missing = build_report(page, entity or OFFLINE_ENTITY, project)
        spec = report_spec(report, offline=True)
    if missing:
        print(f"W&B report: no run logs {', '.join(missing)}; the panels that need them are left out")
    upload = f"wandb login, then python scripts/dashboard.py {path} --sync"
    note = f"W&B report not uploaded ({reason}); to upload it: {upload}."
    page_path, spec_path = write_dashboard(path, dashboard_html(page, note, url), spec)
    if url is None:
        print(f"W&B: {reason}; the report was not uploaded{' and no run was synced' if sync_runs else ''} "
              f"(its spec: {spec_path}). To upload it: {upload}")
    return page_path, spec_path, url
