"""API keys: named, scoped, random tokens of which the catalog stores only a SHA-256 digest.

A token is `lk_` + 43 URL-safe characters (32 random bytes, 256 bits). With that much
randomness a plain SHA-256 is enough: there is no password to guess, so no slow hash is
needed, and a request's key is found by one indexed lookup of its digest (table `api_keys`,
made by the migration `0005_api_keys`). The token itself is shown once, when made.

Scopes nest: `admin` includes `write`, which includes `search`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal, Protocol

from lookalike.errors import InvalidInput

Scope = Literal["search", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("search", "write", "admin")  # each includes those before it
TOKEN_PREFIX = "lk_"
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: never the token, only its digest."""

    name: str
    scope: Scope
    digest: str  # SHA-256 of the token, hex
    created_at: float
    last_used_at: float | None = None


def new_token() -> str:
    """A fresh token (256 random bits), recognisable by its `lk_` prefix in logs and leaks."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def scope_allows(have: Scope, need: Scope) -> bool:
    """Whether a key of scope `have` may do what needs `need`."""
    return SCOPES.index(have) >= SCOPES.index(need)


def check_key(name: str, scope: str) -> Scope:
    """A key name and scope as given by a user, checked; returns the scope."""
    if not KEY_NAME.match(name):
        raise InvalidInput(
            f"key name {name!r}: 1-64 letters, digits, `_`, `.` or `-`, starting with a "
            "letter or digit"
        )
    if scope not in SCOPES:
        raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    return scope  # type: ignore[return-value]


class KeyStore(Protocol):
    def add_api_key(self, key: ApiKey) -> None: ...


def issue_key(store: KeyStore, name: str, scope: str, now: float) -> str:
    """Make a key called `name` with `scope` and store its digest; returns the token (the
    only time it is seen)."""
    checked = check_key(name, scope)
    token = new_token()
    store.add_api_key(ApiKey(name, checked, token_digest(token), now))
    return token
