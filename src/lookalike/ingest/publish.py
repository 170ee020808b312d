"""The producer's side, for testing a pipeline: events from a file checked against the
schema, then sent to the queue the settings name (`lookalike publish`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from lookalike.errors import InvalidInput
from lookalike.ingest.event_sources import EventPublisher
from lookalike.ingest.events import parse_event

BATCH = 500  # events per round trip to the queue


def read_events(handle: TextIO, name: str) -> list[dict[str, Any]]:
    """One JSON event (which may span lines), or JSON Lines; every event checked first, so
    that a bad one stops the whole file (InvalidInput naming its line) before any is sent."""
    text = handle.read()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    found = [(name, whole)] if isinstance(whole, dict) else list(_lines(text, name))
    if not found:
        raise InvalidInput(f"{name}: no events")
    for where, event in found:
        try:
            parse_event({"event": json.dumps(event)})
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from exc
    return [event for _, event in found]


def _lines(text: str, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not valid JSON: {exc.msg}") from exc
        if not isinstance(event, dict):
            raise InvalidInput(f"{where}: an event must be a JSON object")
        yield where, event


def read_event_file(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return read_events(handle, path.name)


def publish_events(
    publisher: EventPublisher, events: Sequence[dict[str, Any]], batch: int = BATCH
) -> list[str]:
    """Send events in order, `batch` per round trip; returns their queue positions."""
    positions: list[str] = []
    for start in range(0, len(events), batch):
        positions.extend(publisher.publish_many(events[start : start + batch]))
    return positions
