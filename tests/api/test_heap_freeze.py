"""A server freezes its start-up heap (model, index, libraries) out of the collector's scans
once it is ready, and hands it back on shutdown; `gc_freeze=false` leaves the collector
alone."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from tests.support.api_catalog import api_settings, copy_data


def _scanned(target: object) -> bool:
    """Whether the collector's generations (not the permanent one) hold `target`."""
    return any(candidate is target for candidate in gc.get_objects())


def test_the_engine_is_frozen_while_serving_and_thawed_after(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
):
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/search/text", params={"q": "red circle"}).status_code == 200
        engine = client.app.state.engine
        frozen = gc.get_freeze_count()
        # Frozen: the collector's full passes no longer walk the engine, nor the bulk of
        # the heap (what requests allocate since start-up is all they scan).
        assert frozen > len(gc.get_objects())
        assert not _scanned(engine) and not _scanned(engine.catalog)
    assert gc.get_freeze_count() == 0
    assert _scanned(engine)


def test_off_leaves_the_collector_alone(tmp_path: Path, indexed_data: Path, tiny_model: Path):
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model, gc_freeze=False)
    with TestClient(create_app(settings)) as client:
        assert gc.get_freeze_count() == 0
        assert _scanned(client.app.state.engine)
