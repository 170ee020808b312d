"""Importing the package, its settings or its CLI loads nothing heavy (checked in a fresh
interpreter): `lookalike --help` and a text search pay only for what they use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("faiss", "torch", "PIL", "open_clip", "sentence_transformers", "transformers", "numpy")


def loaded_after(code: str, env: dict[str, str] | None = None) -> dict:
    report = (
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'omp': os.environ.get('OMP_WAIT_POLICY')}))"
    )
    probe = f"{code}\nimport json, os, sys\n{report}"
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**base, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_lookalike_and_its_settings_load_nothing_heavy():
    result = loaded_after("import lookalike, lookalike.config\nlookalike.config.Settings()")
    assert result == {"heavy": [], "omp": "PASSIVE"}


def test_the_cli_module_loads_nothing_heavy():
    assert loaded_after("import lookalike.cli")["heavy"] == []


def test_an_explicit_omp_wait_policy_wins():
    assert loaded_after("import lookalike", {"OMP_WAIT_POLICY": "ACTIVE"})["omp"] == "ACTIVE"


def test_the_public_names_still_import():
    result = loaded_after(
        "from lookalike import Engine, SearchRequest, Settings\n"
        "assert Engine.__name__ == 'Engine' and Settings.__name__ == 'Settings'\n"
        "assert SearchRequest.__name__ == 'SearchRequest'"
    )
    assert "faiss" in result["heavy"]  # Engine itself is asked for: now it loads
