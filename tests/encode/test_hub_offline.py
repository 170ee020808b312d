"""With the model hub out of reach and nothing cached, loading fails at once with a typed
error and a hint, before torch is imported; what is cached loads with no request.

The hub is made unreachable in two ways: offline mode (HF_HUB_OFFLINE), and an endpoint
on a closed port of 127.0.0.1 (a subprocess, since the hub client reads HF_ENDPOINT once).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.hub import hub_unreachable
from lookalike.encode.text import load_text_tower
from lookalike.encode.text.bert import NumpyBertTower
from lookalike.errors import ModelError
from tests.encode.conftest import write_tiny_bert_folder

HINTS = ("LOOKALIKE_MODEL_CHECKPOINT", "lookalike demo")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def closed_endpoint() -> str:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_python(code: str, tmp_path: Path, endpoint: str) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_DEVICE="cpu",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def seed_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay `folder` out as the hub client caches a download of `repo_id`."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.parent.mkdir(parents=True)
    folder.rename(snapshot)


def test_offline_mode_is_found_without_a_request(offline):
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_the_default_hub_model_offline_fails_with_the_hint(offline, tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", model_cache_dir=tmp_path)
    encoder = create_encoder(settings)  # building it asks nothing
    with pytest.raises(ModelError) as caught:
        encoder.encode_texts(["red dress"])
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message and all(hint in message for hint in HINTS)


def test_a_hub_text_model_offline_fails_with_the_hint(offline, tmp_path: Path):
    with pytest.raises(ModelError, match="LOOKALIKE_TEXT_MODEL") as caught:
        load_text_tower("example-org/no-such-text-model", cache_dir=str(tmp_path))
    assert "not in the local cache" in str(caught.value)


def test_a_cached_hub_text_model_loads_offline(offline, tmp_path: Path, minilm_folder: Path):
    cache = tmp_path / "hub"
    tiny = write_tiny_bert_folder(tmp_path / "tiny", minilm_folder)
    seed_hub_cache(cache, "example-org/tiny-bert", tiny)
    tower = load_text_tower("example-org/tiny-bert", cache_dir=str(cache))
    assert isinstance(tower, NumpyBertTower) and tower.encode(["red dress"]).shape == (1, 32)
    # A forced kind reads its hub name through the same cache, and fails as fast.
    pytest.importorskip("sentence_transformers")
    forced = load_text_tower("sentence-transformers:example-org/tiny-bert", cache_dir=str(cache))
    assert type(forced).__name__ == "LibraryTower"
    assert forced.fingerprint == tower.fingerprint
    with pytest.raises(ModelError, match="LOOKALIKE_TEXT_MODEL"):
        load_text_tower("sentence-transformers:example-org/missing", cache_dir=str(cache))


OPEN_CLIP_PROBE = """
import json, sys
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.errors import ModelError
try:
    create_encoder(Settings(_env_file=None)).encode_texts(["red dress"])
    error = None
except ModelError as exc:
    error = str(exc)
print(json.dumps({"error": error, "torch": "torch" in sys.modules}))
"""


def test_a_closed_hub_endpoint_fails_before_torch_loads(tmp_path: Path, closed_endpoint: str):
    result = run_python(OPEN_CLIP_PROBE, tmp_path, closed_endpoint)
    assert result["error"] and "does not answer" in result["error"]
    assert all(hint in result["error"] for hint in HINTS)
    assert not result["torch"]  # decided before the seconds torch takes to import


def test_the_cli_search_reports_the_hint_and_fails(tmp_path: Path, closed_endpoint: str):
    code = (
        "import json, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'lookalike.cli', 'search', '--text', 'x'],"
        " capture_output=True, text=True)\n"
        "print(json.dumps({'rc': done.returncode, 'err': done.stderr}))\n"
    )
    result = run_python(code, tmp_path, closed_endpoint)
    assert result["rc"] == 1 and "does not answer" in result["err"]
    assert all(hint in result["err"] for hint in HINTS)


TEXT_PROBE = """
import json
from lookalike.encode.text import load_text_tower
from lookalike.errors import ModelError
results = {}
for name in NAMES:
    try:
        results[name] = load_text_tower(name, cache_dir=CACHE).encode(["x"]).shape[1]
    except ModelError as exc:
        results[name] = str(exc)
print(json.dumps(results))
"""


def test_a_closed_endpoint_reads_the_cache_and_fails_fast_for_the_rest(
    tmp_path: Path, closed_endpoint: str, minilm_folder: Path
):
    cache = tmp_path / "hub"
    seed_hub_cache(
        cache, "example-org/tiny-bert", write_tiny_bert_folder(tmp_path / "tiny", minilm_folder)
    )
    names = ["example-org/tiny-bert", "example-org/missing"]
    code = f"NAMES = {names!r}\nCACHE = {str(cache)!r}\n{TEXT_PROBE}"
    result = run_python(code, tmp_path, closed_endpoint)
    assert result["example-org/tiny-bert"] == 32
    assert "does not answer" in result["example-org/missing"]
    assert "LOOKALIKE_TEXT_MODEL" in result["example-org/missing"]
