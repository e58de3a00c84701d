"""`results.json`: the machine-readable summary of a run that comparison tools read."""

import json
from pathlib import Path
from typing import Any

from nst_research.atomic import write_atomic


def write_results(path: Path, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))
