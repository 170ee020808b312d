"""The Engine stays wiring: each job lives in the package that owns it (search pipeline,
ingest runs, index administration, near-duplicates, calibration, housekeeping). A class
that grows past 200 lines is taking jobs back."""

from __future__ import annotations

import ast
import inspect

import lookalike.engine

MAX_ENGINE_LINES = 200


def test_the_engine_class_is_at_most_200_lines() -> None:
    tree = ast.parse(inspect.getsource(lookalike.engine))
    (engine,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Engine"]
    assert engine.end_lineno is not None
    assert engine.end_lineno - engine.lineno + 1 <= MAX_ENGINE_LINES
