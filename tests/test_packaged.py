"""The sha256 check of packaged files is remembered: a file verified before is not hashed again until its
size or modification time changes, and a cache that cannot be used changes nothing but the speed."""

import json
import os

import pytest

from nst_research import packaged
from nst_research.errors import UserInputError

DATA = b"weights" * 1000


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A file, its digest, and the cache directory (empty) of this test."""
    monkeypatch.setenv("NST_RESEARCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.bin"
    path.write_bytes(DATA)
    return path, packaged.sha256(path)


@pytest.fixture
def hashes(monkeypatch):
    """The paths hashed from here on."""
    hashed = []
    original = packaged.sha256

    def counting(path):
        hashed.append(path)
        return original(path)

    monkeypatch.setattr(packaged, "sha256", counting)
    return hashed


def test_a_verified_file_is_not_hashed_again(weights, hashes):
    path, digest = weights
    packaged.verify_sha256(path, digest, "fix")
    packaged.verify_sha256(path, digest, "fix")
    assert hashes == [path]
    cache = json.loads((packaged.cache_dir() / packaged.CACHE_FILE).read_text())
    assert cache[str(path.resolve())]["sha256"] == digest


def test_a_file_changed_in_place_is_hashed_again_and_refused(weights, hashes):
    path, digest = weights
    packaged.verify_sha256(path, digest, "fix")
    path.write_bytes(DATA[:-1] + b"X")  # same size, new modification time
    with pytest.raises(UserInputError, match="sha256"):
        packaged.verify_sha256(path, digest, "reinstall it")
    assert hashes == [path, path]


def test_a_file_with_another_size_and_the_old_time_is_hashed_again(weights, hashes):
    path, digest = weights
    packaged.verify_sha256(path, digest, "fix")
    before = path.stat()
    path.write_bytes(DATA[: len(DATA) // 2])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(UserInputError, match="sha256"):
        packaged.verify_sha256(path, digest, "fix")
    assert hashes == [path, path]


def test_a_refused_file_is_not_remembered(weights, hashes):
    path, _ = weights
    for _ in range(2):
        with pytest.raises(UserInputError, match="sha256"):
            packaged.verify_sha256(path, "0" * 64, "fix")
    assert hashes == [path, path]
    assert not (packaged.cache_dir() / packaged.CACHE_FILE).exists()


def test_another_expected_digest_is_checked_again(weights, hashes):
    path, digest = weights
    packaged.verify_sha256(path, digest, "fix")
    with pytest.raises(UserInputError, match="sha256"):
        packaged.verify_sha256(path, "0" * 64, "fix")  # a new pin is not taken on trust
    assert hashes == [path, path]


@pytest.mark.parametrize("cache", ["not a directory", "unreadable json"])
def test_an_unusable_cache_is_ignored(weights, hashes, monkeypatch, tmp_path, cache):
    path, digest = weights
    if cache == "not a directory":
        blocker = tmp_path / "file"
        blocker.write_text("")
        monkeypatch.setenv("NST_RESEARCH_CACHE", str(blocker / "cache"))
    else:
        packaged.cache_dir().mkdir()
        (packaged.cache_dir() / packaged.CACHE_FILE).write_text("{not json")
    packaged.verify_sha256(path, digest, "fix")
    packaged.verify_sha256(path, digest, "fix")
    with pytest.raises(UserInputError, match="sha256"):
        packaged.verify_sha256(path, "0" * 64, "fix")
    assert len(hashes) == (3 if cache == "not a directory" else 2)
