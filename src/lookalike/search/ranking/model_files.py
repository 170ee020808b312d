"""A learned ranker's model: LightGBM's text format beside a JSON manifest, never a pickle.

The manifest names the format, the version, the features the model reads (in its column
order), the SHA-256 of the model text, and what training recorded (window, metrics,
versions). Loading checks all of it before LightGBM parses a byte, and every failure is a
`RankerModelError`: a missing file, a checksum that does not match (a corrupt or
half-copied file), a feature this version of Lookalike does not compute, a model LightGBM
refuses. LightGBM is imported here, on first load, so servers that never use a learned
ranker never load it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import RankerModelError
from lookalike.files.atomic import write_json_atomic, write_text_atomic
from lookalike.search.ranking.features import FEATURES

MODEL_FORMAT = "lookalike-ranker/1"
MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class LearnedModel:
    """A loaded model: scores feature rows given in FEATURES order."""

    version: str
    features: tuple[str, ...]  # the columns the model reads, in its order
    columns: np.ndarray  # where each of them sits in FEATURES
    booster: Any  # lightgbm.Booster
    manifest: Mapping[str, Any]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Scores of (n, len(FEATURES)) rows; one thread (servers run many queries)."""
        if not len(rows):
            return np.zeros(0, dtype=np.float64)
        picked = np.ascontiguousarray(rows[:, self.columns], dtype=np.float64)
        return np.asarray(self.booster.predict(picked, num_threads=1), dtype=np.float64)


def model_digest(model_text: str) -> str:
    return hashlib.sha256(model_text.encode()).hexdigest()


def load_model(manifest: Mapping[str, Any], model_text: str) -> LearnedModel:
    """Check a manifest and its model text, then parse the model (RankerModelError if any
    of it is wrong)."""
    if not isinstance(manifest, Mapping) or manifest.get("format") != MODEL_FORMAT:
        found = manifest.get("format") if isinstance(manifest, Mapping) else type(manifest)
        raise RankerModelError(f"ranker manifest format {found!r} is not {MODEL_FORMAT}")
    version = manifest.get("version")
    features = manifest.get("features")
    if not isinstance(version, str) or not version:
        raise RankerModelError("ranker manifest has no version")
    if not (isinstance(features, list) and features and all(isinstance(f, str) for f in features)):
        raise RankerModelError(f"ranker model {version}: manifest lists no features")
    unknown = [name for name in features if name not in FEATURES]
    if unknown:
        raise RankerModelError(
            f"ranker model {version} needs feature(s) {', '.join(unknown)} that this version "
            "does not compute"
        )
    if manifest.get("model_sha256") != model_digest(model_text):
        raise RankerModelError(
            f"ranker model {version}: the model text does not match its manifest's checksum "
            "(corrupt or from another model)"
        )
    booster = _parse(version, model_text)
    if list(booster.feature_name()) != list(features):
        raise RankerModelError(
            f"ranker model {version}: the model reads {booster.feature_name()}, its manifest "
            f"says {features}"
        )
    columns = np.array([FEATURES.index(name) for name in features], dtype=np.intp)
    return LearnedModel(version, tuple(features), columns, booster, dict(manifest))


def _parse(version: str, model_text: str) -> Any:
    try:
        import lightgbm
    except ImportError as exc:  # an optional extra
        raise RankerModelError(
            "a learned ranker needs LightGBM: pip install 'lookalike[rank]'"
        ) from exc
    try:
        return lightgbm.Booster(model_str=model_text)
    except Exception as exc:  # LightGBMError, or anything its parser trips on
        raise RankerModelError(f"ranker model {version}: LightGBM cannot read it: {exc}") from exc


def read_model_dir(path: Path) -> tuple[dict[str, Any], str]:
    """(manifest, model text) of a model directory (or its manifest file's path)."""
    folder = path.parent if path.name == MANIFEST_FILE else path
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        model_text = (folder / MODEL_FILE).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RankerModelError(f"no ranker model at {folder}: {exc.filename} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RankerModelError(f"cannot read the ranker model at {folder}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise RankerModelError(f"{folder / MANIFEST_FILE} is not a JSON object")
    return manifest, model_text


def write_model_dir(folder: Path, manifest: Mapping[str, Any], model_text: str) -> Path:
    """Write the model, then its manifest (each atomically): a reader that sees the new
    manifest sees the model it describes."""
    write_text_atomic(folder / MODEL_FILE, model_text)
    write_json_atomic(folder / MANIFEST_FILE, dict(manifest))
    return folder
