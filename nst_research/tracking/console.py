"""Messages to the person at the terminal, on stderr, outside any progress bar; each is also a record of the run's
log (app.log in the run directory, where Hydra's logging is set up), with Lightning's own notices."""

import logging
import sys
from pathlib import Path

log = logging.getLogger("nst_research")


def notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    log.info(message)


def notice_once(message: str, marker: Path | None) -> None:
    """`notice(message)` the first time only: the call that creates the file `marker` (atomically, so jobs in other
    processes agree, e.g. those of one multirun) gives the notice, later calls only log it. No marker: a notice."""
    if marker is not None:
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            log.info(message)
            return
        except OSError:  # a folder that cannot be written: rather the notice every time than none
            pass
    notice(message)


def lightning_notices_to_log() -> None:
    """Lightning prints its INFO records ("Received SIGTERM", the default of `weights_only` when it saves on
    Ctrl-C) through a console handler of its own; keep them in the log and its warnings on the console."""
    for handler in logging.getLogger("lightning").handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
