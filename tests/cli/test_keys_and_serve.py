"""`lookalike keys create|list|revoke` on a real SQLite catalog, and `lookalike serve`'s
refusal to listen on a network address with no key (checked before anything binds)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.api.serving import check_exposure, is_loopback_bind
from lookalike.catalog import open_catalog
from lookalike.catalog.keys import TOKEN_PREFIX, token_digest
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.errors import ConfigError

# No key from the developer's environment may leak into these runs.
CLEAN_ENV = {"LOOKALIKE_API_KEY": "", "LOOKALIKE_CATALOG_URL": ""}


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})


def settings(data_dir: Path, **overrides) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **overrides)


def test_create_list_and_revoke(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = run("keys", "create", "importer", "--scope", "write", "--data-dir", data)
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and len(token) >= len(TOKEN_PREFIX) + 43
    assert "not shown again" in created.stderr
    catalog = open_catalog(settings(tmp_path / "data"))
    try:
        stored = catalog.api_key(token_digest(token))
        assert (stored.name, stored.scope) == ("importer", "write")
        catalog.touch_api_key(stored.digest, time.time())
    finally:
        catalog.close()
    assert run("keys", "create", "front", "--data-dir", data).exit_code == 0  # search

    listed = run("keys", "list", "--data-dir", data)
    assert listed.exit_code == 0
    assert token not in listed.output
    lines = listed.stdout.splitlines()
    assert lines[1].split()[:2] == ["front", "search"] and lines[1].endswith("never")
    assert lines[2].split()[:2] == ["importer", "write"] and not lines[2].endswith("never")
    as_json = json.loads(run("keys", "list", "--json", "--data-dir", data).stdout)
    assert [k["name"] for k in as_json] == ["front", "importer"]
    assert as_json[1]["last_used"] is not None and token not in json.dumps(as_json)

    revoked = run("keys", "revoke", "importer", "--data-dir", data)
    assert revoked.exit_code == 0 and "within 5 s" in revoked.output
    assert [k["name"] for k in json.loads(run("keys", "list", "--json", "-d", data).stdout)] == [
        "front"
    ]
    assert run("keys", "revoke", "importer", "--data-dir", data).exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "bad name"], "key name"),
        (["keys", "create", "ok", "--scope", "root"], "scope 'root'"),
    ],
)
def test_bad_names_and_scopes_are_refused(tmp_path: Path, args, message) -> None:
    result = run(*args, "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and message in result.output


def test_a_name_is_one_key(tmp_path: Path) -> None:
    data = str(tmp_path)
    assert run("keys", "create", "twice", "--data-dir", data).exit_code == 0
    again = run("keys", "create", "twice", "--data-dir", data)
    assert again.exit_code == 2 and "exists" in again.output


def test_serve_refuses_a_network_address_without_any_key(tmp_path: Path) -> None:
    """Refused before uvicorn starts: nothing ever listens on 0.0.0.0 here."""
    result = run("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output
    assert "lookalike keys create --scope write NAME" in result.output


def test_what_serve_says_about_keys_and_hosts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Loopback without a key: allowed, with a note saying writes answer 401.
    (note,) = check_exposure(settings(data_dir, host="127.0.0.1"))
    assert "write endpoints answer 401" in note
    for host in ("192.0.2.1", "::", "shop.internal", ""):
        with pytest.raises(ConfigError, match="no API key is configured"):
            check_exposure(settings(data_dir, host=host))
    # A key in the environment, or one in the catalog, allows a network address.
    assert check_exposure(settings(data_dir, host="192.0.2.1", api_key="lk_env")) == []
    assert run("keys", "create", "k", "--data-dir", str(data_dir)).exit_code == 0
    (hosts_note,) = check_exposure(settings(data_dir, host="0.0.0.0"))
    assert "LOOKALIKE_ALLOWED_HOSTS" in hosts_note
    assert check_exposure(settings(data_dir, host="0.0.0.0", allowed_hosts=["a.example"])) == []


def test_loopback_binds() -> None:
    for host in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback_bind(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "example.com", ""):
        assert not is_loopback_bind(host), host
