"""What `lookalike serve` (and the demo) check and set up before the server starts: no
network-facing server without a key, notes on what the defaults mean, the audit log's
place in uvicorn's logging."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from lookalike.api.auth import CREATE_HINT
from lookalike.api.hosts import WILDCARD_BINDS
from lookalike.catalog import open_catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError


def is_loopback_bind(host: str) -> bool:
    """Whether `host` (a bind address) reaches only this machine. Names other than
    `localhost` are not resolved here: they count as network-facing."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keys_configured(settings: Settings) -> bool:
    """An admin key in the environment, or any key in the catalog."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return True
    catalog = open_catalog(settings)
    try:
        return bool(catalog.api_keys())
    finally:
        catalog.close()


def check_exposure(settings: Settings) -> list[str]:
    """Refuse (ConfigError, exit 2) to serve on a network-facing address with no key at all;
    otherwise return notes for the operator about keys and host names."""
    configured = keys_configured(settings)
    if not configured and not is_loopback_bind(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host}: it is reachable from other machines and "
            f"no API key is configured. Create one with `{CREATE_HINT}` (or set "
            "LOOKALIKE_API_KEY), or serve on 127.0.0.1 behind a proxy"
        )
    notes = []
    if not configured:
        notes.append(
            "no API key is configured: write endpoints answer 401 until you create one with "
            f"`{CREATE_HINT}` (or set LOOKALIKE_API_KEY)"
        )
    if settings.host in WILDCARD_BINDS and not settings.allowed_hosts:
        notes.append(
            "only requests for localhost, 127.0.0.1 or [::1] are answered (DNS rebinding "
            "guard): set LOOKALIKE_ALLOWED_HOSTS to the names clients use, e.g. "
            "'[\"search.example.com\"]'"
        )
    return notes


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the audit log (`lookalike.audit`) to stderr at INFO; uvicorn
    applies it in every worker process."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["lookalike.audit"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


# Measured through HTTP on the demo (2 cores, benchmarks/load/run.py, docs/benchmarks.md):
# with FAISS's OpenMP pool and torch's intra-op pool at their default (every core), 8
# clients got 35 "similar" QPS; with one thread each, 88. Each request's threads spin and
# wait on each other's cores; a server's parallelism comes from concurrent requests
# (`api_threads`) instead.
SERVER_INTRA_OP_THREADS = 1


def server_threads(settings: Settings) -> Settings:
    """`settings` with the intra-op pools of a server: FAISS (`search_threads`) and torch
    (`torch_threads`) at one thread per request unless configured."""
    updates: dict[str, Any] = {}
    if settings.search_threads is None:
        updates["search_threads"] = SERVER_INTRA_OP_THREADS
    if settings.torch_threads is None:
        updates["torch_threads"] = SERVER_INTRA_OP_THREADS
    return settings.model_copy(update=updates) if updates else settings
