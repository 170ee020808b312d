"""The product event's JSON Schema (`schemas/product_event.v1.json`, shipped with the
package): the contract with producers, checked on every event a consumer reads and every
event `lookalike publish` sends."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from lookalike.errors import ConfigError, InvalidInput

SCHEMA_NAME = "product_event.v1"
SCHEMA_FILE = f"{SCHEMA_NAME}.json"

# Fields whose pattern says more in words than in its regular expression.
_PATTERN_WORDS = {
    "price": "is not a number",
    "occurred_at": "is not an ISO 8601 date-time or Unix time",
    "timestamp": "is not an ISO 8601 date-time or Unix time",
    "ts": "is not an ISO 8601 date-time or Unix time",
}


def event_schema() -> dict[str, Any]:
    """The schema document (JSON Schema draft 2020-12)."""
    text = resources.files("lookalike.ingest").joinpath("schemas", SCHEMA_FILE).read_text()
    return json.loads(text)


@cache
def _validator() -> Any:
    try:
        from jsonschema import Draft202012Validator
    except ImportError as exc:  # an extra without it: say which to install
        raise ConfigError(
            "checking events needs jsonschema: pip install 'lookalike[kafka]' or "
            f"'lookalike[redis]' ({exc})"
        ) from exc
    schema = event_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def require_event_schema() -> None:
    """Fail fast (ConfigError) where events will be checked and the validator is missing."""
    _validator()


MAX_MESSAGE = 300


def check_event(data: dict[str, Any]) -> None:
    """InvalidInput naming the first place where `data` breaks the schema."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is None:
        return
    path = ".".join(str(part) for part in error.absolute_path)
    field = str(error.absolute_path[-1]) if error.absolute_path else ""
    if error.validator in ("pattern", "anyOf") and field in _PATTERN_WORDS:
        message = f"{error.instance!r} {_PATTERN_WORDS[field]}"
    else:
        message = error.message
    where = f" at {path}" if path else ""
    if len(message) > MAX_MESSAGE:  # it may quote the offending value, which can be huge
        message = message[:MAX_MESSAGE] + "..."
    raise InvalidInput(f"event does not match {SCHEMA_NAME}{where}: {message}")
