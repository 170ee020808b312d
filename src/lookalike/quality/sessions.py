"""Shopper sessions, pseudonymised: the id a client sends (`X-Session-Id`, or `session` in
a search body) is never stored; the logs keep a keyed hash of it (HMAC-SHA-256).

The key is `LOOKALIKE_SESSION_SECRET` when set, else a random key the catalog made once
(migration 0007) so every worker and replica hashes a session alike, A/B arms included.
Erasing a session's logs on request hashes the id the same way. Changing the key
detaches the logs made under the old one (they can no longer be found by session id).
"""

from __future__ import annotations

import hashlib
import hmac

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import CatalogError, InvalidInput

SECRET_META_KEY = "session_secret"
MAX_SESSION_CHARS = 200


class SessionHasher:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty session key")
        self._key = key

    @classmethod
    def for_catalog(cls, settings: Settings, catalog: Catalog) -> SessionHasher:
        if settings.session_secret is not None:
            return cls(settings.session_secret.get_secret_value().encode())
        stored = catalog.get_meta(SECRET_META_KEY)
        if not stored:
            raise CatalogError("the catalog has no session key (migration 0007 makes one)")
        return cls(stored.encode())

    def hash(self, session: str | None) -> str | None:
        """The stored form of a client's session id (None stays None)."""
        if session is None:
            return None
        session = session.strip()
        if not session:
            return None
        if len(session) > MAX_SESSION_CHARS:
            raise InvalidInput(f"a session id has at most {MAX_SESSION_CHARS} characters")
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()[:32]
