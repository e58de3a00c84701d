"""W&B mode selection never needs a server, and a logger entry that yields nothing is skipped."""

import http.server
import os
import socket
import threading
import time

import pytest
from lightning.pytorch.loggers import CSVLogger

from nst_research.tracking import loggers as L


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(L, "can_reach", refuse)


@pytest.mark.parametrize("requested, mode", [("offline", "offline"), ("dryrun", "offline"), ("disabled", "disabled")])
def test_requested_mode_is_honoured_without_checks(monkeypatch, no_network, requested, mode):
    monkeypatch.setenv("WANDB_MODE", requested)
    assert L.wandb_mode() == (mode, f"WANDB_MODE={requested}")


def test_no_login_goes_offline_and_says_why(monkeypatch, tmp_path, no_network):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    mode, reason = L.wandb_mode()
    assert mode == "offline"
    assert "wandb login" in reason


def test_login_without_reachable_server_goes_offline(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.invalid")
    monkeypatch.setattr(L, "can_reach", lambda host, *a, **k: False)
    assert L.wandb_mode() == ("offline", "no answer from wandb.example.invalid:443 within 3 s")


@pytest.mark.parametrize("url, address", [("https://api.wandb.ai", ("api.wandb.ai", 443)),
                                          ("http://wandb.lab", ("wandb.lab", 80)),
                                          ("http://127.0.0.1:8080", ("127.0.0.1", 8080))])
def test_the_server_address_has_the_urls_port_or_its_schemes(monkeypatch, url, address):
    monkeypatch.setenv("WANDB_BASE_URL", url)
    assert L.wandb_address() == address


def test_a_self_hosted_server_on_its_own_port_is_used_and_a_silent_one_is_not(monkeypatch):
    """Reachable means an HTTP answer (any status) from the URL's own port; a server that accepts connections and
    never answers is not reachable."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert L.wandb_mode() == ("online", None)
    finally:
        server.shutdown()
        server.server_close()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the backlog), never answers
        port = silent.getsockname()[1]
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        started = time.monotonic()
        assert L.wandb_mode(timeout=0.5) == ("offline", f"no answer from 127.0.0.1:{port} within 0.5 s")
        assert time.monotonic() - started < 5


def test_netrc_login_is_found(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert L.has_wandb_login("api.wandb.ai")
    assert not L.has_wandb_login("other.example")


def test_disabled_wandb_is_skipped_and_csv_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = {
        "wandb": {"_target_": "nst_research.tracking.loggers.wandb_logger", "project": "p", "save_dir": str(tmp_path)},
        "csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(tmp_path), "name": "csv"},
    }
    loggers = L.instantiate_loggers(cfg)
    assert len(loggers) == 1 and isinstance(loggers[0], CSVLogger)
    assert not (tmp_path / "wandb").exists()
    assert L.instantiate_loggers(None) == []


def test_wandb_that_cannot_start_never_stops_the_run(monkeypatch, tmp_path, capsys):
    """Online fails, then offline fails too: the logger is dropped with one notice, no exception."""
    monkeypatch.setattr(L, "wandb_mode", lambda: ("online", None))
    attempts = []

    class BrokenWandbLogger:
        def __init__(self, offline, **kwargs):
            attempts.append(offline)
            raise OSError("server said 500")

    monkeypatch.setattr(L, "WandbLogger", BrokenWandbLogger)
    assert L.wandb_logger(project="p", save_dir=str(tmp_path)) is None
    assert attempts == [False, True]  # tried online, then offline
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "server said 500" in err[0] and "continuing without W&B" in err[0]


def test_offline_logger_does_not_leak_wandb_mode_into_the_next_job(monkeypatch, tmp_path):
    """Lightning's offline WandbLogger sets WANDB_MODE=dryrun; the next multirun job must decide afresh."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(L, "wandb_mode", lambda: ("offline", "no login found"))

    class FakeRun:
        dir = str(tmp_path / "offline-run-x" / "files")

        def define_metric(self, *args, **kwargs):
            pass

    class FakeWandbLogger:
        def __init__(self, offline, **kwargs):
            os.environ["WANDB_MODE"] = "dryrun"  # what Lightning does for offline=True
            self.experiment = FakeRun()

    monkeypatch.setattr(L, "WandbLogger", FakeWandbLogger)
    assert isinstance(L.wandb_logger(project="p"), FakeWandbLogger)
    assert "WANDB_MODE" not in os.environ
