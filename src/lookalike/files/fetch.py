"""Read an image's bytes from a local path or an http(s)/file URL, within the byte limit."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from lookalike.config import Settings
from lookalike.errors import FetchError, ImageTooLarge

RETRY_STATUSES = {429, 500, 502, 503, 504}
URL_SCHEMES = ("http://", "https://", "file://")


def is_url(location: str) -> bool:
    """Whether a source names a URL (else it is a local path)."""
    return location.startswith(URL_SCHEMES)


class Fetcher:
    """Thread-safe reader shared by ingest workers (one pooled HTTP client)."""

    def __init__(self, *, max_bytes: int, timeout_s: float = 10.0, retries: int = 3) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.retries = retries
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Fetcher:
        return cls(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.download_timeout_s,
            retries=settings.download_retries,
        )

    def fetch(self, location: str) -> bytes:
        if location.startswith("file://"):
            return self._read_file(Path(unquote(urlparse(location).path)), location)
        if is_url(location):
            return self._download(location)
        return self._read_file(Path(location), location)

    def _read_file(self, path: Path, location: str) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:  # checked before reading: never load a huge file
                raise ImageTooLarge(
                    f"{size} bytes is over the limit of {self.max_bytes} bytes", source=location
                )
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise FetchError(f"{location}: file not found") from exc
        except IsADirectoryError as exc:
            raise FetchError(f"{location}: is a directory") from exc
        except PermissionError as exc:
            raise FetchError(f"{location}: permission denied") from exc
        except OSError as exc:
            raise FetchError(f"{location}: cannot read: {exc}") from exc

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout_s,
                    follow_redirects=True,
                    headers={"User-Agent": "lookalike-ingest"},
                )
            return self._client

    def _download(self, url: str) -> bytes:
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
            try:
                with self._http().stream("GET", url) as response:
                    if response.status_code in RETRY_STATUSES:
                        last_error = f"HTTP {response.status_code}"
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{url}: HTTP {response.status_code}")
                    return self._read_capped(response, url)
            except httpx.TimeoutException:
                last_error = f"timed out after {self.timeout_s:g}s"
            except httpx.TransportError as exc:
                last_error = f"connection failed: {exc}"
        raise FetchError(f"{url}: {last_error} (after {self.retries + 1} attempts)")

    def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageTooLarge(
                f"{declared} bytes is over the limit of {self.max_bytes}", source=url
            )
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > self.max_bytes:
                raise ImageTooLarge(f"over the limit of {self.max_bytes} bytes", source=url)
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
