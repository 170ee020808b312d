"""The model hub, asked only when it can answer.

With no network, the hub client retries each request with back-off for about a minute
before it gives up. Before a download, `hub_unreachable` asks once (a TCP connect with a
short timeout) and answers in seconds; loaders then try the local cache alone
(`cache_only`) and, when the model is not there, raise a ModelError with `OFFLINE_HINT`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 2.0
OFFLINE_HINT = (
    "set LOOKALIKE_MODEL_CHECKPOINT to a local model (a folder written by `lookalike train` "
    "or `lookalike export-onnx`, or an open_clip checkpoint), or run `lookalike demo`, "
    "which trains a small model here with no network"
)

_offline_lock = threading.Lock()
_offline_depth = 0
_online_value = False


def hub_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be asked now (offline mode, endpoint not answering), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    target = endpoint
    # Behind a proxy, the proxy is what must answer (the standard proxy variables).
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        via = f" (via {target.hostname}:{port})" if target is not endpoint else ""
        return f"{constants.ENDPOINT}{via} does not answer: {exc.strerror or exc}"


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Within the block the hub client reads its local cache and sends no request.

    The client reads its offline flag on every request; flipping it here (counted, so
    nested or concurrent blocks restore it once) spares a minute of retries against a hub
    that `hub_unreachable` already found silent.
    """
    global _offline_depth, _online_value
    from huggingface_hub import constants

    with _offline_lock:
        if _offline_depth == 0:
            _online_value = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        _offline_depth += 1
    try:
        yield
    finally:
        with _offline_lock:
            _offline_depth -= 1
            if _offline_depth == 0:
                constants.HF_HUB_OFFLINE = _online_value
