"""Local image files: read only under granted roots, only regular files, never more than
the cap; a fetcher without roots (API, events) reads no local file at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lookalike.errors import FetchError, FetchRefused, ImageTooLarge
from lookalike.files.fetch import Fetcher
from lookalike.files.local import recorded_roots, with_recorded
from tests.support.hostile_http import PNG

CAP = 64 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A granted root with one image, a folder beside it with another (not granted)."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.png").write_bytes(PNG)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(PNG)
    return tmp_path / "root"


@pytest.fixture
def local(root: Path) -> Fetcher:
    return Fetcher(max_bytes=CAP, local_roots=[root])


def test_a_file_under_the_root_is_read(local: Fetcher, root: Path) -> None:
    assert local.fetch(str(root / "sub" / "a.png")) == PNG
    assert local.fetch((root / "sub" / "a.png").as_uri()) == PNG
    assert local.fetch(f"file://localhost{root}/sub/a.png") == PNG
    assert local.fetch(str(root / "sub" / ".." / "sub" / "a.png")) == PNG


def test_a_symlink_that_stays_inside_is_followed(local: Fetcher, root: Path) -> None:
    (root / "link.png").symlink_to(root / "sub" / "a.png")
    assert local.fetch(str(root / "link.png")) == PNG


def test_a_root_given_through_a_symlink_works(tmp_path: Path, root: Path) -> None:
    (tmp_path / "alias").symlink_to(root)
    fetch = Fetcher(max_bytes=CAP, local_roots=[tmp_path / "alias"])
    assert fetch.fetch(str(tmp_path / "alias" / "sub" / "a.png")) == PNG
    assert fetch.fetch(str(root / "sub" / "a.png")) == PNG


def fifo(where: Path) -> Path:
    path = where / "pipe.png"
    os.mkfifo(path)
    return path


ESCAPES = {
    "etc-passwd": lambda root: "/etc/passwd",
    "file-url": lambda root: "file:///etc/passwd",
    "dot-dot": lambda root: str(root / ".." / "outside" / "secret.png"),
    "dot-dot-url": lambda root: f"file://{root}/../outside/secret.png",
    "dev-zero": lambda root: "/dev/zero",
    "proc-environ": lambda root: "/proc/self/environ",
    "sibling-prefix": lambda root: str(root.parent / (root.name + "-evil") / "x.png"),
    "remote-file-host": lambda root: f"file://example.test{root}/sub/a.png",
    "nul-byte": lambda root: str(root / "sub" / "a.png\x00.txt"),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_paths_out_of_the_root_are_refused(local: Fetcher, root: Path, name: str) -> None:
    with pytest.raises(FetchRefused):
        local.fetch(ESCAPES[name](root))


def test_a_symlink_out_of_the_root_is_refused(local: Fetcher, root: Path) -> None:
    (root / "escape.png").symlink_to(root.parent / "outside" / "secret.png")
    (root / "etc").symlink_to("/etc")
    with pytest.raises(FetchRefused, match="outside the folders"):
        local.fetch(str(root / "escape.png"))
    with pytest.raises(FetchRefused, match="outside the folders"):
        local.fetch(str(root / "etc" / "passwd"))


@pytest.mark.timeout(10)  # a FIFO or /dev/zero that blocked or streamed would hang here
def test_only_regular_files_are_read(tmp_path: Path, local: Fetcher, root: Path) -> None:
    with pytest.raises(FetchRefused, match="directory"):
        local.fetch(str(root / "sub"))
    with pytest.raises(FetchRefused, match="not a regular file"):
        local.fetch(str(fifo(root)))  # nobody writes to it: opening must not wait
    devices = Fetcher(max_bytes=CAP, local_roots=["/dev"])  # even where /dev is a root
    for device in ("/dev/zero", "/dev/urandom", "/dev/null"):
        with pytest.raises(FetchRefused, match="not a regular file"):
            devices.fetch(device)


def test_the_cap_holds_before_and_while_reading(local: Fetcher, root: Path) -> None:
    big = root / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(CAP))
    with pytest.raises(ImageTooLarge, match="over the limit"):
        local.fetch(str(big))
    (root / "exact.png").write_bytes(bytes(CAP))
    assert len(local.fetch(str(root / "exact.png"))) == CAP


def test_a_missing_file_is_a_fetch_error(local: Fetcher, root: Path) -> None:
    with pytest.raises(FetchError, match="file not found") as caught:
        local.fetch(str(root / "nope.png"))
    assert not isinstance(caught.value, FetchRefused)


@pytest.mark.parametrize("name", [*sorted(ESCAPES), "inside"])
def test_without_roots_no_local_file_is_read(root: Path, name: str) -> None:
    """The API's and the event consumer's fetcher: every local source is refused, the
    ones under some root too, and no file is even looked at."""
    source = str(root / "sub" / "a.png") if name == "inside" else ESCAPES[name](root)
    for fetch in (Fetcher(max_bytes=CAP), Fetcher(max_bytes=CAP, local_roots=[root]).remote_only()):
        with pytest.raises(FetchRefused):
            fetch.fetch(source)


def test_recorded_roots_accumulate_without_duplicates(tmp_path: Path, root: Path) -> None:
    first = with_recorded(None, [root])
    assert first is not None and recorded_roots(first) == [root.resolve()]
    assert with_recorded(first, [root / "sub" / ".."]) is None  # the same folder
    both = with_recorded(first, [tmp_path / "outside"])
    assert recorded_roots(both) == [root.resolve(), (tmp_path / "outside").resolve()]
    assert recorded_roots("not json") == [] and recorded_roots('{"a": 1}') == []
