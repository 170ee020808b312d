"""The fetch policy at the batch and stream entries.

Manifests (`lookalike index`, in-process): local files are read only under the manifest's
folder (or `media_roots`); every hostile row - /etc/passwd, ../, symlinks out, /dev/zero, a
FIFO, /proc, a directory, a redirect loop, an invalid URL, a loopback canary, a drip - is a
reported skip with its reason, and the run goes on. Events (the stream consumer's path):
no local file at all, while an event that only changes metadata still re-reads the stored
image of a product `lookalike index` added."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike import Engine, Settings
from lookalike.cli import app
from lookalike.files.local import RECORDED_ROOTS_KEY, recorded_roots
from lookalike.ingest.sources import ItemSpec
from tests.support.hostile_http import LoopbackServer
from tests.support.image_catalogs import png_bytes

GOOD = 3


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """shop/ (the manifest's folder, with images), elsewhere/ (not granted)."""
    shop, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    (shop / "img").mkdir(parents=True)
    elsewhere.mkdir()
    for i in range(GOOD):
        (shop / "img" / f"good-{i}.png").write_bytes(png_bytes(i))
    (elsewhere / "secret.png").write_bytes(png_bytes(99))
    (shop / "img" / "escape.png").symlink_to(elsewhere / "secret.png")
    os.mkfifo(shop / "img" / "pipe.png")
    return {"shop": shop, "elsewhere": elsewhere}


def hostile_rows(layout: dict[str, Path], hostile: LoopbackServer, canary: LoopbackServer):
    """(id, image, expected words in the reason) for every row that must be skipped."""
    shop, elsewhere = layout["shop"], layout["elsewhere"]
    return [
        ("etc-passwd", "/etc/passwd", "outside the folders"),
        ("file-url", "file:///etc/passwd", "outside the folders"),
        ("dot-dot", "../elsewhere/secret.png", "outside the folders"),
        ("absolute-elsewhere", str(elsewhere / "secret.png"), "outside the folders"),
        ("symlink-out", "img/escape.png", "outside the folders"),
        ("dev-zero", "/dev/zero", "outside the folders"),
        ("proc-environ", "/proc/self/environ", "outside the folders"),
        ("fifo", "img/pipe.png", "not a regular file"),
        ("directory", str(shop / "img"), "a directory"),
        ("redirect-loop", f"{hostile.url}/loop", "more than 3 redirects"),
        ("redirect-to-canary", f"{hostile.url}/redirect?to={canary.url}/png", "loopback"),
        ("canary", f"{canary.url}/png", "loopback"),
        ("invalid-url", "http://[::1", "not a valid URL"),
        ("other-scheme", "gopher://127.0.0.1/x", "only http(s)"),
        ("drip", f"{hostile.url}/drip", "deadline"),
    ]


def write_manifest(shop: Path, rows: list[tuple[str, str, str]]) -> Path:
    manifest = shop / "catalog.jsonl"
    lines = [{"id": f"good-{i}", "image": f"img/good-{i}.png"} for i in range(GOOD)]
    lines += [{"id": item_id, "image": image} for item_id, image, _ in rows]
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    return manifest


@pytest.fixture
def policy_settings(settings: Settings, hostile: LoopbackServer) -> Settings:
    return settings.model_copy(
        update={
            "fetch_allow_hosts": [hostile.allow_entry],
            "fetch_deadline_s": 1.5,
            "download_retries": 0,
        }
    )


@pytest.mark.timeout(120)
def test_a_manifest_skips_every_hostile_row_and_goes_on(
    policy_settings: Settings,
    layout: dict[str, Path],
    hostile: LoopbackServer,
    canary: LoopbackServer,
) -> None:
    rows = hostile_rows(layout, hostile, canary)
    manifest = write_manifest(layout["shop"], rows)
    with Engine(policy_settings) as engine:
        report = engine.index_path(manifest)
        assert report.added == GOOD
        reasons = {bad.id: bad.reason for bad in report.failed}
        assert sorted(reasons) == sorted(item_id for item_id, _, _ in rows)
        for item_id, _, words in rows:
            assert words in reasons[item_id], (item_id, reasons[item_id])
        assert sorted(p.id for p in engine.catalog.iter_products()) == [
            f"good-{i}" for i in range(GOOD)
        ]
        # The folder the run was granted is remembered: the API may serve those images.
        stored = recorded_roots(engine.catalog.get_meta(RECORDED_ROOTS_KEY))
        assert stored == [layout["shop"].resolve()]
    # canary: no request (checked by the fixture)


def test_the_cli_reports_the_skips_and_exits_zero(
    policy_settings: Settings, layout: dict[str, Path], tiny_model_dir: Path
) -> None:
    rows = [("etc-passwd", "/etc/passwd", ""), ("dev-zero", "/dev/zero", "")]
    manifest = write_manifest(layout["shop"], rows)
    env = {
        "LOOKALIKE_MODEL_CHECKPOINT": str(tiny_model_dir),
        "LOOKALIKE_DEVICE": "cpu",
        "LOOKALIKE_DATA_DIR": str(policy_settings.data_dir),
    }
    result = CliRunner().invoke(app, ["index", str(manifest), "-q"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{GOOD} added" in result.output and "2 failed" in result.output
    assert "skipped etc-passwd: " in result.output and "outside the folders" in result.output


def test_media_roots_admit_another_folder(
    policy_settings: Settings, layout: dict[str, Path]
) -> None:
    rows = [("elsewhere", str(layout["elsewhere"] / "secret.png"), "")]
    manifest = write_manifest(layout["shop"], rows)
    with Engine(policy_settings) as engine:
        assert [b.id for b in engine.index_path(manifest).failed] == ["elsewhere"]
    granted = policy_settings.model_copy(update={"media_roots": [layout["elsewhere"]]})
    with Engine(granted) as engine:
        report = engine.index_path(manifest)
        assert report.added == 1 and not report.failed  # the good rows were already there


def test_a_folder_ingest_skips_a_symlink_out_of_it(
    policy_settings: Settings, layout: dict[str, Path]
) -> None:
    (layout["shop"] / "img" / "pipe.png").unlink()
    with Engine(policy_settings) as engine:
        report = engine.index_path(layout["shop"])
    assert report.added == GOOD
    assert [(b.id, "outside the folders" in b.reason) for b in report.failed] == [
        ("img/escape.png", True)
    ]


def test_events_read_no_local_file(
    policy_settings: Settings, layout: dict[str, Path], hostile: LoopbackServer
) -> None:
    """The path the stream consumer takes (`index_items` with the engine's own fetcher):
    every local source is refused, even one under a folder `lookalike index` was given."""
    shop = layout["shop"]
    with Engine(policy_settings) as engine:
        assert engine.index_path(write_manifest(shop, [])).added == GOOD
        sources = [
            "/etc/passwd",
            "file:///etc/passwd",
            "/dev/zero",
            "/proc/self/environ",
            str(shop / "img" / "pipe.png"),
            str(shop / "img" / "good-1.png"),  # under a recorded root: still not for events
            str(shop / "img" / "escape.png"),
        ]
        items = [ItemSpec(f"event-{i}", source) for i, source in enumerate(sources)]
        items.append(ItemSpec("event-url", f"{hostile.url}/png"))
        report = engine.index_items(items, write_report=False)
        assert report.added == 1  # the allow-listed URL
        assert len(report.failed) == len(sources)
        assert all("local files are not accepted" in bad.reason for bad in report.failed)


def test_a_metadata_event_keeps_reading_the_stored_image(
    policy_settings: Settings, layout: dict[str, Path]
) -> None:
    """An event without an image re-reads the stored one; for a product `lookalike index`
    added from its folder that is a local file under a recorded root - allowed."""
    manifest = write_manifest(layout["shop"], [])
    with Engine(policy_settings) as engine:
        engine.index_path(manifest)
        before = engine.catalog.get("good-1")
        product = engine.upsert(ItemSpec("good-1", before.image_source, title="Renamed"))
        assert product.title == "Renamed" and product.vector_id == before.vector_id


def test_the_stream_consumer_refuses_local_files_and_keeps_stored_ones(
    policy_settings: Settings, layout: dict[str, Path], redis_url: str
) -> None:
    """Through a real redis-server: an event naming a server file is dead-lettered with
    the reason; a metadata-only event of a product indexed from its folder is applied."""
    redis = pytest.importorskip("redis", reason="needs lookalike[redis]")
    from lookalike.ingest.consumer import StreamConsumer
    from lookalike.ingest.redis_stream import RedisStreamSource, publish

    stream = "policy:events"
    settings = policy_settings.model_copy(
        update={
            "redis_url": redis_url,
            "stream_name": stream,
            "consumer_name": "policy",
            "max_deliveries": 1,
            "consumer_block_ms": 50,
        }
    )
    with Engine(settings) as engine, redis.Redis.from_url(redis_url) as client:
        engine.index_path(write_manifest(layout["shop"], []))
        publish(client, stream, {"type": "product_created", "id": "x", "image": "/etc/passwd"})
        publish(client, stream, {"type": "product_updated", "id": "good-2", "price": 3.5})
        consumer = StreamConsumer(
            RedisStreamSource.from_settings(settings), engine, max_deliveries=1, block_ms=50
        )
        for _ in range(20):
            consumer.step()
            if consumer.source.lag() == {"lag": 0, "pending": 0} and not consumer.pending:
                break
        dead = [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in client.xrange(f"{stream}:dead")
        ]
        assert len(dead) == 1 and "local files are not accepted" in dead[0]["error"]
        assert engine.catalog.get("good-2").price == 3.5
        assert "x" not in {p.id for p in engine.catalog.iter_products()}
        consumer.source.close()
