"""Connection URLs as they may be printed: without the password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`scheme://user:secret@host/db` -> `scheme://user:***@host/db`; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# librdkafka property names that hold secrets (sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, ssl.key.pem, sasl.jaas.config, ...).
_SECRET_WORDS = ("password", "secret", "token", "jaas", ".key.pem", "keystore")


def is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def redact_config(config: dict[str, object]) -> dict[str, object]:
    """Client properties as they may be shown: secret values replaced by `***`."""
    return {key: "***" if is_secret_key(key) else value for key, value in config.items()}
