"""scripts/dashboard.py: the sweep's page and W&B Report, checked against what the runs really logged.

The runs' W&B keys are read back from their offline logs with `wandb leet inspect --json`, apart from
the code under test (which reads `--summary`), so a panel naming a key no run logs fails here.
"""

import contextlib
import io
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wandb_workspaces.reports.v2 as wr
import yaml
from conftest import REPO
from judged_runs import day_of_runs, style_weight_sweep, write_config, write_run
from wandb_workspaces.reports.v2 import interface

from nst_research.tracking import dashboard as dash
from nst_research.tracking.compare import label_lines
from nst_research.tracking.runlock import RunLock

DASHBOARD_SCRIPT = REPO / "scripts" / "dashboard.py"


def run_dashboard(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`python scripts/dashboard.py ARGS` in this process, as it runs with no W&B login: its exit status."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(Path(args[0]) / "no-netrc"))
    monkeypatch.setattr(sys, "argv", [str(DASHBOARD_SCRIPT), *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(DASHBOARD_SCRIPT), run_name="__main__")
    return exited.value.code


def make_dashboard(sweep: Path) -> tuple[str, dict[str, Any], str]:
    """`python scripts/dashboard.py SWEEP` with no W&B login: (its output, the report spec, the page)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        assert run_dashboard(mp, str(sweep)) == 0
    return out.getvalue(), json.loads((sweep / "wandb_report.json").read_text()), (sweep / "dashboard.html").read_text()


def flat_keys(config: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}"}
    return keys


def logged(run_dir: Path) -> tuple[set[str], set[str]]:
    """(metric, image and table keys; config keys) of a run's offline W&B log, from `wandb leet inspect --json`."""
    log_dir = sorted((run_dir / "wandb").glob("offline-run-*"))[-1]
    records = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_dir)],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    metrics, config = set(), set()
    for record in map(json.loads, records):
        if record["type"] == "history":
            items = record["history"]["item"]
            metrics |= set(items) | {k.removesuffix("._type") for k in items if k.endswith("._type")}  # media, tables
        elif record["type"] == "config":
            config |= flat_keys(record["config"]["update"])
    return metrics, config


def panels(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for block in spec["spec"]["blocks"] if block["type"] == "panel-grid"
            for panel in block["metadata"]["panelBankSectionConfig"]["panels"]]


def picked_keys(node: Any) -> set[str]:
    """The keys a Weave expression picks from the runs' summaries (a summary-table panel's table)."""
    if isinstance(node, list):
        return set().union(*map(picked_keys, node))
    if not isinstance(node, dict):
        return set()
    keys = set().union(*map(picked_keys, node.values()))
    if node.get("name") == "pick":
        keys.add(node["inputs"]["key"]["val"])
    return keys


def references(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(metric keys, config keys) that the report's panels name."""
    metrics, config = set(), set()

    def accessor(name: str) -> None:  # "summary:final/total", "config:optimizer.value._target_"
        section, _, key = name.partition(":")
        if section == "config":
            config.add(key.replace(".value", "", 1))
        else:
            metrics.add(key)

    for panel in panels(spec):
        c = panel["config"]
        if panel["viewType"] == "Run History Line Plot":
            metrics |= {c["xAxis"], *c["metrics"]}
            if "groupBy" in c:
                config.add(c["groupBy"].replace(".value", "", 1))
        elif panel["viewType"] in ("Parallel Coordinates Plot", "Scatter Plot"):
            for name in [col["accessor"] for col in c.get("columns", [])] + [c.get("xAxis"), c.get("yAxis")]:
                if name:
                    accessor(name)
        elif panel["viewType"] == "Media Browser":
            metrics |= set(c["mediaKeys"])
        elif panel["viewType"] == "Weave":
            metrics |= picked_keys(c)
    return metrics, config


def sweep_group(run_dir: Path) -> str:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["sweep"]["group"]


def check_report(spec: dict[str, Any], sweep: Path, final: str, media: str) -> None:
    """The spec names only logged keys, filters on the sweep's group and holds every kind of panel."""
    runs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    metrics, config = set(), set()
    for run in runs:
        m, c = logged(run)
        metrics, config = metrics | m, config | c
    named_metrics, named_config = references(spec)
    assert named_metrics <= metrics, f"panels name metrics no run logged: {named_metrics - metrics}"
    assert named_config <= config, f"panels name config keys no run logged: {named_config - config}"
    assert {final, media} <= named_metrics and named_config
    kinds = {panel["viewType"] for panel in panels(spec)}
    assert {"Run History Line Plot", "Parallel Coordinates Plot", "Media Browser", "Run Comparer"} <= kinds
    grids = [block["metadata"] for block in spec["spec"]["blocks"] if block["type"] == "panel-grid"]
    filters = [f for grid in grids for rs in grid["runSets"] for f in rs["filters"]["filters"]]
    assert filters and all(f["key"]["name"] == "group" and f["value"] == sweep_group(runs[0]) for f in filters)
    for grid in grids:  # no panel hides another
        layouts = [panel["layout"] for panel in grid["panelBankSectionConfig"]["panels"]]
        cells = [(x, y) for a in layouts
                 for x in range(a["x"], a["x"] + a["w"]) for y in range(a["y"], a["y"] + a["h"])]
        assert len(cells) == len(set(cells))


@pytest.fixture(scope="module")
def nst_sweep(run_cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep of the issue that starred the smallest style weight by its total loss, each run judged."""
    sweep = tmp_path_factory.mktemp("dashboard") / "sweep"
    done = run_cli("-m", "style_weight=1e4,1e6", "optimizer=lbfgs,adam", "image_size=32", "iterations=6",
                   "save_every=3", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-2000:]
    return sweep


@pytest.fixture(scope="module")
def nst_dashboard(nst_sweep: Path) -> tuple[str, dict[str, Any], str]:
    return make_dashboard(nst_sweep)


def test_report_names_only_keys_the_runs_logged(nst_sweep, nst_dashboard):
    out, spec, _ = nst_dashboard
    check_report(spec, nst_sweep, final="eval/score", media="result")
    scatter = [p["config"] for p in panels(spec) if p["viewType"] == "Scatter Plot"]
    # the judge's score against the one numeric swept key, and the trade-off
    assert [(s["xAxis"], s["yAxis"]) for s in scatter] == [("config:style_weight.value", "summary:eval/score"),
                                                          ("summary:eval/content", "summary:eval/style")]
    (parallel,) = [p["config"] for p in panels(spec) if p["viewType"] == "Parallel Coordinates Plot"]
    axes = [column["accessor"] for column in parallel["columns"]]
    assert {"summary:eval/content", "summary:eval/style", "summary:eval/score"} <= set(axes)
    assert "summary:final/total" not in axes  # monotone in style_weight by construction: not a result to read
    assert "the report was not uploaded" in out and "wandb login" in out


def test_report_without_the_judge_has_no_tradeoff(nst_sweep):
    """Runs that log no eval/* (judge=none): no trade-off panel, no eval axis, and no error."""
    sweep = dash.load_page(nst_sweep)
    for log in sweep.logs:
        log.keys -= {key for key in log.keys if key.startswith("eval/")}
    report, missing = dash.build_report(sweep, "someone", "nst-research")
    metrics, _ = references(json.loads(dash.report_spec(report, offline=True)))
    assert not any(key.startswith("eval/") for key in metrics)
    assert {"eval/content", "eval/style", "eval/score"} <= set(missing)


@pytest.mark.parametrize("judged", [True, False])
def test_report_of_runs_without_wandb_logs_names_eval_keys_only_for_judged_runs(tmp_path, judged):
    """With no W&B log to read (logger=csv), the runs' results.json tell whether they were judged."""
    sweep = dash.load_page(style_weight_sweep(tmp_path, judged=judged))
    report, _ = dash.build_report(sweep, "someone", "nst-research")
    spec = json.loads(dash.report_spec(report, offline=True))
    scatter = [(p["config"]["xAxis"], p["config"]["yAxis"]) for p in panels(spec) if p["viewType"] == "Scatter Plot"]
    assert (("summary:eval/content", "summary:eval/style") in scatter) is judged
    assert any(key.startswith("eval/") for key in references(spec)[0]) is judged


def test_page_ranks_by_the_judge_and_draws_the_tradeoff(nst_sweep, nst_dashboard):
    """The runs' style weights differ: the star goes to the best judge's score, not to the smallest total loss,
    and the trade-off plane has every run's point in its table colour."""
    out, _, page = nst_dashboard
    runs = dash.load_page(nst_sweep).runs
    scores = [run.results["eval"]["score"] for run in runs]
    assert "Ranked by the judge&#x27;s score" in page and "objective.terms.style.weight" in page
    assert "Ranked by the judge's score" in out  # the console says it too
    (best,) = re.findall(r'<td class="num best">([^<]+)</td>', page)
    assert best == dash.number(min(scores))
    header = re.findall(r'<th class="num">([^<]+)</th>', page)
    row = page.split('<tr class="run">')[1 + scores.index(min(scores))]
    assert re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)[header.index("eval score")] == best
    plane = page[page.index("Trade-off"):]
    plane = plane[plane.index("<svg"):plane.index("</svg>")]
    for index, run in enumerate(runs):
        point = plane[plane.index(f'id="run-{index}"'):]
        assert dash.run_color(index) in point[:point.index("</g>")]  # the point, in the run's colour
        assert label_lines(run.label, width=34)[0] in plane  # labelled by its settings
    front = dash.on_front(runs)
    assert front and page.count('class="pareto"') == len(front)


def test_page_shows_every_run_with_its_image_and_curve(nst_dashboard):
    _, _, page = nst_dashboard
    assert page.count('<tr class="run">') == 4
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) == 4
    assert page.count("<svg") == 2 and page.count("completed</span>") == 4  # the curves and the trade-off
    assert not re.search(r'(src|href)="(https?:|/)|<script|<link', page)  # self-contained: nothing to fetch
    for value in ("lbfgs", "adam", "10000.0", "1000000.0"):
        assert value in page


def test_failed_and_unfinished_jobs(nst_sweep, tmp_path, capsys, monkeypatch):
    """A failed job stays in the table with its status; a job without results.json is named as skipped."""
    sweep = tmp_path / "sweep"
    shutil.copytree(nst_sweep, sweep, ignore=shutil.ignore_patterns("dashboard.html", "wandb_report.json"))
    results = json.loads((sweep / "1" / "results.json").read_text())
    (sweep / "1" / "results.json").write_text(json.dumps({"status": "failed", "task": results["task"],
                                                          "error": "RuntimeError: out of memory"}))
    (sweep / "3" / "results.json").unlink()
    assert run_dashboard(monkeypatch, str(sweep)) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {sweep / '3'}: no results.json (the job did not finish)"]
    page = (sweep / "dashboard.html").read_text()
    assert page.count('<tr class="run">') == 3 and 'class="status failed"' in page and "out of memory" in page


def test_a_day_of_unrelated_runs_is_not_presented_as_one_sweep(tmp_path):
    """outputs/runs/<date>: the page and the console say it is a folder of runs; each task gets its own section
    (settings, table ranked by its own rule, curve); the completed batched sweep is not skipped."""
    day = day_of_runs(tmp_path / "2026-12-05")
    out, spec, page = make_dashboard(day)
    assert out.splitlines()[0] == f"folder of 5 runs (not one sweep): 3 style transfer, 1 GAN, 1 feed-forward: {day}"
    assert "skipped" not in out and "Skipped" not in page
    assert "sweep" not in page[page.index("<h1>"):page.index("</h1>")].lower()
    headings = re.findall(r'<h2 class="task">([^<]+)</h2>', page)
    assert headings == ["Style transfer · 3 runs", "GAN · 1 run", "Feed-forward · 1 run"]
    gan = page[page.index("GAN · 1 run"):page.index("Feed-forward · 1 run")]
    assert gan.count('<tr class="run">') == 1 and "Frechet distance" in gan and "10-10-00" in gan
    assert page.count('<tr class="run">') == 5 and "10-05-00/1" in page and "pics/styles/10-15-00" in page
    assert spec["displayName"] == "Runs in 2026-12-05"


def test_running_jobs_and_resumed_labels(tmp_path, capsys, monkeypatch):
    """A job being written now is a row marked running; a resumed run (`resume=<dir> iterations=60`) is labelled by
    its config.yaml, not by the first command's iterations=2000."""
    for job, weight in enumerate([1e4, 1e6]):
        write_run(tmp_path / str(job), [f"style_weight={weight}", "iterations=2000"], 10.0, None, style_weight=weight)
        write_config(tmp_path / str(job), iterations=2000)
    write_config(tmp_path / "1", iterations=60)
    (tmp_path / "2" / ".hydra").mkdir(parents=True)
    (tmp_path / "2" / ".hydra" / "overrides.yaml").write_text("- style_weight=1e7\n- iterations=2000\n")
    with RunLock(tmp_path / "2"):
        assert run_dashboard(monkeypatch, str(tmp_path)) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"folder of 3 runs, 1 running (not one sweep): {tmp_path}"
    page = (tmp_path / "dashboard.html").read_text()
    rows = page.split('<tr class="run">')[1:]
    assert "<div>iterations=60</div>" in rows[1] and "iterations=2000" not in rows[1]
    assert 'class="status running"' in rows[2] and "style_weight=1e7" in rows[2]


def test_refuses_a_directory_without_runs(tmp_path, capsys, monkeypatch):
    assert run_dashboard(monkeypatch, str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_results_table_panel_once_the_runs_log_it(nst_sweep):
    sweep = dash.load_page(nst_sweep)
    for log in sweep.logs:
        log.keys.add("results")
    report, missing = dash.build_report(sweep, "someone", "nst-research")
    spec = json.loads(dash.report_spec(report, offline=True))
    assert "results" not in missing and "results" in references(spec)[0]
    assert spec["project"] == {"name": "nst-research", "entityName": "someone"}


def test_config_key_of_each_override():
    configs = [{"gan.name": "fc", "gan.lr": 1e-3, "style_weight": 1e4, "optimizer._target_": "torch.optim.LBFGS",
                "optimizer.lr": 1.0, "trainer.limit_train_batches": 3},
               {"gan.name": "dcgan", "gan.lr": 2e-4, "style_weight": 1e6, "optimizer._target_": "torch.optim.Adam",
                "optimizer.lr": 0.02, "trainer.limit_train_batches": 3}]
    assert dash.config_key("style_weight", configs) == "style_weight"
    assert dash.config_key("gan", configs) == "gan.name"  # a group choice: its name ...
    assert dash.config_key("optimizer", configs) == "optimizer._target_"  # ... or its class
    assert dash.config_key("+trainer.limit_train_batches", configs) == "trainer.limit_train_batches"
    assert dash.config_key("content", configs) is None


def test_saves_the_report_when_logged_in(nst_sweep, tmp_path, capsys, monkeypatch):
    """Logged in, the command syncs the runs when asked, saves the report and prints its URL; the API is faked."""
    sweep = tmp_path / "sweep"
    shutil.copytree(nst_sweep, sweep, ignore=shutil.ignore_patterns("dashboard.html", "wandb_report.json"))
    api = SimpleNamespace(default_entity="someone", client=SimpleNamespace(app_url="https://wandb.example"))
    synced, saved = [], []
    monkeypatch.setattr(dash, "wandb_mode", lambda: ("online", None))
    monkeypatch.setattr(dash, "sync", lambda s: synced.append(s.directory))
    monkeypatch.setattr(interface, "_get_api", lambda: api)
    monkeypatch.setattr(interface, "execute_graphql", lambda *a, **k: {"project": {"internalId": "UHJvamVjdDox"}})
    monkeypatch.setattr(wr.Report, "save", lambda self, **k: (saved.append(self), setattr(self, "id", "abc123")))
    page, spec_path, url = dash.dashboard(sweep, sync_runs=True)
    assert synced == [sweep] and len(saved) == 1
    assert url.startswith("https://wandb.example/someone/nst-research/reports/") and url.endswith("--abc123")
    assert url in page.read_text() and "not uploaded" not in capsys.readouterr().out
    spec = json.loads(spec_path.read_text())
    assert spec["project"]["entityName"] == "someone"
    assert {rs["project"]["id"] for p in spec["spec"]["blocks"] if p["type"] == "panel-grid"
            for rs in p["metadata"]["runSets"]} == {"UHJvamVjdDox"}


@pytest.mark.slow  # run with pytest -m slow
def test_gan_sweep(run_cli, tmp_path):
    """A GAN sweep: Frechet distance panels and sample grids."""
    sweep = tmp_path / "gan"
    done = run_cli("-m", "task=gan", "gan=fc,dcgan", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
                   "metric.samples=100", "grid_size=4", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-2000:]
    _, spec, page = make_dashboard(sweep)
    check_report(spec, sweep, final="val/frechet_distance", media="samples")
    assert page.count('<tr class="run">') == 2
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) == 2
    assert "val/frechet_distance" in page and "gan=dcgan" in page


def leet_records(run_dir: Path) -> list[dict[str, Any]]:
    log_dir = sorted((run_dir / "wandb").glob("offline-run-*"))[-1]
    return [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_dir)],
        capture_output=True, text=True, check=True).stdout.splitlines()]


def test_each_run_logs_aligned_images_summaries_a_results_table_and_an_artifact(nst_sweep):
    """What a W&B dashboard needs of every run, read back from its offline log."""
    for run_dir in sorted(p for p in nst_sweep.iterdir() if (p / "results.json").is_file()):
        records = leet_records(run_dir)
        metrics = [r["metric"] for r in records if r["type"] == "metric"]
        assert next(m for m in metrics if m.get("name") == "loss/total")["step_metric"] == "trainer/global_step"
        rows = [r["history"]["item"] for r in records if r["type"] == "history"]
        image_rows = [row for row in rows if "image._type" in row and row["trainer/global_step"] > 0]
        assert [row["trainer/global_step"] for row in image_rows] == [3]
        assert "loss/total" in image_rows[0]  # the picture of step 3 is in the row of step 3's losses
        result_row = next(row for row in rows if "result._type" in row)
        assert "final/total" in result_row and result_row["trainer/global_step"] == 6
        table = next(row for row in rows if row.get("results._type") == "table-file")
        assert table["results.nrows"] == 1
        files = sorted(run_dir.glob("wandb/offline-run-*/files/media/table/results_*.table.json"))
        saved = json.loads(files[-1].read_text())
        assert "image" in saved["columns"] and "final/total" in saved["columns"] and len(saved["data"]) == 1
        assert any(r["type"] == "artifact" and r["artifact"]["type"] == "result" for r in records)
        assert list((run_dir / "wandb" / "data" / "artifacts").glob("staging*"))  # staged in the run directory
        config = next(r["config"]["update"] for r in records if r["type"] == "config")
        assert not {"output_dir", "logger", "resume"} & set(config)
        assert "dir" not in json.dumps(config.get("sweep", {}))
        summary = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json",
                                  str(sorted((run_dir / "wandb").glob("offline-run-*"))[-1])],
                                 capture_output=True, text=True, check=True).stdout
        assert set(json.loads(summary)["summary"]["loss/total"]) == {"min", "last"}
