"""Read an image's bytes from an http(s) URL, or a local file where local access is granted.

One guard for every fetch, whoever asks (API, event consumer, batch ingest, Ray, training):

- http(s) only; the host is resolved once and every address checked (no loopback, private,
  link-local, multicast, reserved... see `files.addresses`) unless host[:port] is on the
  allow-list; the connection goes to a checked address; each redirect (at most
  `max_redirects`) is checked again; the body is streamed under a byte cap and the whole
  fetch under a deadline (`files.remote`).
- local paths and file:// URLs only under `local_roots` (`files.local`); a Fetcher made
  without roots - the one for API requests and event streams - reads no local file at all.

Every failure is typed: `FetchRefused` (policy, 422), `FetchError` (400), `ImageTooLarge`
(413). Construction chooses the policy; `fetch(location)` is the same for every caller.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from lookalike.config import Settings
from lookalike.errors import FetchRefused
from lookalike.files.guard import HostGuard, Resolver
from lookalike.files.local import LocalFiles
from lookalike.files.pinned import Connector
from lookalike.files.remote import Downloader

REMOTE_PREFIXES = ("http://", "https://")
URL_SCHEMES = (*REMOTE_PREFIXES, "file://")

Roots = Iterable[str | os.PathLike[str]]


def is_url(location: str) -> bool:
    """Whether a source names a URL, of a scheme we fetch or not (else it is a local path,
    which a manifest resolves against its folder)."""
    head, sep, _ = location.partition("://")
    return location.lower().startswith(URL_SCHEMES) or (bool(sep) and _has_scheme(head + ":"))


def _has_scheme(location: str) -> bool:
    """`ftp://x`, `gopher:x`, `data:...`: a scheme we do not fetch (a Windows drive letter
    or a plain path has none of these)."""
    head, sep, _ = location.partition(":")
    return bool(sep) and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum()


class Fetcher:
    """Thread-safe reader shared by ingest workers and API threads (one pooled HTTP client).

    `Fetcher(max_bytes=...)` fetches http(s) only; pass `local_roots` to also read local
    files under those folders. `with_local_roots` / `remote_only` make a sibling with
    another local policy that shares this one's HTTP client and network policy.
    `resolver` (host -> IPs) and `connector` replace the system's resolver and TCP connect
    (tests, custom networks); `ssl_context` may add a private CA but must verify.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float = 10.0,
        retries: int = 3,
        deadline_s: float = 15.0,
        max_redirects: int = 3,
        allow_hosts: Iterable[str] = (),
        local_roots: Roots | None = None,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
        ssl_context: ssl.SSLContext | None = None,
        _downloader: Downloader | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.remote = _downloader or Downloader(
            HostGuard(allow_hosts, resolver),
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            retries=retries,
            deadline_s=deadline_s,
            max_redirects=max_redirects,
            connector=connector,
            ssl_context=ssl_context,
        )
        self.local = LocalFiles(local_roots or (), max_bytes=max_bytes)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, local_roots: Roots | None = None, **overrides: object
    ) -> Fetcher:
        """The fetcher the settings describe; remote-only unless `local_roots` is given
        (see `ingest_roots`, `served_roots`). `overrides`: resolver / connector for tests."""
        return cls(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.download_timeout_s,
            retries=settings.download_retries,
            deadline_s=settings.fetch_deadline_s,
            max_redirects=settings.fetch_max_redirects,
            allow_hosts=settings.fetch_allow_hosts,
            local_roots=local_roots,
            **overrides,  # type: ignore[arg-type]
        )

    @property
    def local_roots(self) -> tuple[Path, ...]:
        """The (real) folders this fetcher reads local files from; empty: none."""
        return self.local.roots

    def with_local_roots(self, roots: Roots | None) -> Fetcher:
        """A fetcher reading local files under `roots` (None: none), sharing this one's
        HTTP client, allow-list and limits."""
        return Fetcher(max_bytes=self.max_bytes, local_roots=roots, _downloader=self.remote)

    def remote_only(self) -> Fetcher:
        """This fetcher without local access: for sources chosen by API clients or events."""
        return self if not self.local.roots else self.with_local_roots(None)

    def fetch(self, location: str) -> bytes:
        """The bytes of an image source, or a typed error (never an httpx one)."""
        if location.lower().startswith(REMOTE_PREFIXES):
            return self.remote.download(location)
        if location.lower().startswith("file:") or not _has_scheme(location):
            return self.local.read(location)
        raise FetchRefused(
            "only http(s) URLs (and, from the command line, local files) are read",
            source=location,
        )

    def close(self) -> None:
        """Close the pooled HTTP client (shared with siblings made by `with_local_roots`)."""
        self.remote.close()


def ingest_roots(location: str | os.PathLike[str], settings: Settings) -> list[Path]:
    """The local roots of `lookalike index LOCATION`: the folder itself, or the folder a
    manifest lies in (its relative paths resolve there), plus `media_roots`."""
    path = Path(location)
    named = path if path.is_dir() else path.parent
    return [named, *settings.media_roots]


def served_roots(settings: Settings, recorded: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Where stored image files may be read back from (the API's image route, reindex,
    training): Lookalike's own media folder, `media_roots`, and the roots earlier
    `lookalike index` runs were granted (`recorded`, kept in the catalog)."""
    return [settings.data_dir / "media", *settings.media_roots, *recorded]
