"""Which runtime answers text and image queries, said without loading a model.

`lookalike info`, the API's info and `lookalike serve` report it. A loaded half reports
what actually runs it; a half not loaded yet reports what will (from the settings, the
installed packages and a finished ONNX export's record, if any).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.factory import model_source
from lookalike.errors import LookalikeError

log = logging.getLogger(__name__)


def encoder_runtimes(settings: Settings, encoder: Callable[[], Encoder]) -> dict[str, str]:
    """{"text": ..., "images": ...}: e.g. "onnxruntime-fp32", "numpy", "torch".

    `encoder()` gives the (built, maybe not loaded) encoder; it is asked only for
    Lookalike-trained models, whose encoder is cheap to build and knows its towers.
    """
    kind = model_source(settings).kind
    if kind == "onnx-dir":
        return {"text": "onnxruntime", "images": "onnxruntime"}
    if kind != "lit-dir":
        return {"text": "torch", "images": "torch"}
    unknown = {"text": "unknown", "images": "unknown"}
    try:
        runtimes = getattr(encoder(), "runtimes", None)
    except LookalikeError:  # an unreadable model: `info` still describes the rest
        return unknown
    return runtimes() if callable(runtimes) else unknown


def runtimes_line(runtimes: dict[str, str]) -> str:
    """One line for people: `text onnxruntime-fp32, images torch`."""
    return ", ".join(f"{half} {runtime}" for half, runtime in runtimes.items())


def warm_up(encoder: Encoder) -> None:
    """Load the towers an encoder loads on first use (where it says how: `warm_up()`).
    A tower that cannot load is logged, not raised: its queries fail as they did before
    (a 503 for a model error), and the other half still serves."""
    warm = getattr(encoder, "warm_up", None)
    if not callable(warm):
        return
    try:
        warm()
    # Broad on purpose: warming is optional, and a missing optional package (torch for a
    # text-only install) must not stop a server that answers text queries without it.
    except (LookalikeError, ImportError, OSError, RuntimeError) as exc:
        log.warning("the encoder's towers did not all load at start-up: %s", exc)
