"""`lookalike index --engine`: refused values, the Ray extra missing, a Ray address that
nothing answers. None of these needs Ray to run."""

from __future__ import annotations

import socket
import sys

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.errors import BatchIndexError
from tests.support.image_catalogs import write_catalog


def test_unknown_engine_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--engine", "spark"])
    assert result.exit_code == 2
    assert "--engine must be local or ray" in result.output


def test_ray_engine_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    # As if `lookalike[ray]` were not installed: importing Ray or pyarrow fails.
    for name in ("lookalike.ingest.ray_pipeline", "lookalike.ingest.shards"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    manifest = write_catalog(tmp_path / "catalog", good=1)
    result = CliRunner().invoke(
        app, ["index", str(manifest), "--engine", "ray", "-d", str(tmp_path / "data")]
    )
    assert result.exit_code == 2
    assert "pip install 'lookalike[ray]'" in result.output


def test_an_unreachable_ray_address_fails_fast():
    pytest.importorskip("pyarrow", reason="the Ray pipeline needs the ray extra")
    from lookalike.ingest.ray_pipeline import check_reachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    with pytest.raises(BatchIndexError, match="cannot reach a Ray cluster"):
        check_reachable(f"ray://127.0.0.1:{port}")  # closed now
    check_reachable("auto")
