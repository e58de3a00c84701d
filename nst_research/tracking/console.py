"""Messages to the person at the terminal, on stderr, outside any progress bar."""

import sys


def notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
