"""Typed errors, raised deep and mapped to HTTP statuses and CLI exit codes in one place.

LookalikeError
├── ConfigError            bad or conflicting settings                 (CLI 2)
├── InvalidInput           a request or record we cannot use           (HTTP 422)
│   ├── InvalidImage       corrupt, truncated, not an image, too small  (HTTP 400)
│   │   ├── UnsupportedImage   not an image format we can read          (HTTP 415)
│   │   └── ImageTooLarge      over the byte or pixel limit             (HTTP 413)
│   │       └── DecompressionBomb  small file, too many pixels           (HTTP 400)
│   ├── ManifestError      a manifest we cannot read at all
│   └── UnsupportedMediaType  a request body of a type the endpoint does not take (HTTP 415)
├── FetchError             an image source could not be read/downloaded (HTTP 400)
│   └── FetchRefused       a source the fetch policy forbids: an internal address, a
│                          local file outside the roots or where none are granted,
│                          a scheme other than http(s), too many redirects (HTTP 422)
├── NotFound               unknown product                              (HTTP 404)
├── ModelError             model cannot be built or loaded              (HTTP 503)
│   ├── ModelMismatch      catalog was indexed with another model
│   └── CheckpointError    a training state we cannot resume from        (CLI 2)
├── IndexError_            vector index problems                        (HTTP 503)
│   ├── IndexMismatch      saved index does not fit the settings
│   └── IndexNotTrained    a trained family (IVF-PQ) got vectors before training
├── CatalogError           catalog database problems                    (HTTP 503)
│   └── StoreLocked        another process holds the single-writer lock
├── QueueError             the event stream (Redis Streams) cannot be read or written (HTTP 503)
├── BatchIndexError        a distributed batch run failed (Ray cluster) (HTTP 503)
├── Unauthorized           no API key, or one that is not valid          (HTTP 401)
├── Forbidden              a valid key whose scope does not cover the route (HTTP 403)
└── TryLater               refused for now; `retry_after` s -> `Retry-After`
    ├── RateLimited        over a rate limit of a key or client address  (HTTP 429)
    ├── Overloaded         the server sheds load instead of queueing it  (HTTP 503)
    └── DeadlineExceeded   the request ran past its deadline             (HTTP 504)
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Root of every error Lookalike raises on purpose."""

    http_status = 500
    exit_code = 1

    def http_headers(self) -> dict[str, str]:
        """Headers the HTTP answer to this error carries (none unless a subclass says)."""
        return {}


class ConfigError(LookalikeError):
    http_status = 500
    exit_code = 2


class InvalidInput(LookalikeError):
    http_status = 422
    exit_code = 2


class InvalidImage(InvalidInput):
    """An image we refuse, with a human-readable reason."""

    http_status = 400

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class UnsupportedImage(InvalidImage):
    http_status = 415


class ImageTooLarge(InvalidImage):
    http_status = 413


class DecompressionBomb(ImageTooLarge):
    """Over the pixel limit: the upload itself may be small, so not 413 but a bad image."""

    http_status = 400


class ManifestError(InvalidInput):
    pass


class UnsupportedMediaType(InvalidInput):
    http_status = 415


class FetchError(LookalikeError):
    """An image source could not be read or downloaded (not found, unreachable, timed out,
    an HTTP error status); `reason` says why, `source` names what was asked for."""

    http_status = 400

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class FetchRefused(FetchError):
    """The fetch policy forbids this source; asking again will not help (hence 422, an
    input we cannot use, rather than 400)."""

    http_status = 422


class NotFound(LookalikeError):
    http_status = 404

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"not found: {what}")


class ModelError(LookalikeError):
    http_status = 503


class ModelMismatch(ModelError):
    pass


class CheckpointError(ModelError):
    exit_code = 2


class IndexError_(LookalikeError):
    http_status = 503


class IndexMismatch(IndexError_):
    pass


class IndexNotTrained(IndexError_):
    pass


class CatalogError(LookalikeError):
    http_status = 503


class StoreLocked(CatalogError):
    pass


class QueueError(LookalikeError):
    http_status = 503


class BatchIndexError(LookalikeError):
    """The distributed engine could not be reached or lost work; rerun to resume."""

    http_status = 503


class Unauthorized(LookalikeError):
    http_status = 401

    def http_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="lookalike"'}


class Forbidden(LookalikeError):
    http_status = 403


class TryLater(LookalikeError):
    """Refused for now: `retry_after` seconds is when asking again can succeed."""

    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(TryLater):
    http_status = 429


class Overloaded(TryLater):
    http_status = 503


class DeadlineExceeded(TryLater):
    http_status = 504
