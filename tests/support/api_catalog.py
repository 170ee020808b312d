"""Fixtures for the API tests: a tiny real model, a small catalog of drawn product images
indexed once per session, and apps / servers over copies of it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

import lookalike
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.engine import Engine
from tests.support.http_files import FolderServer, serve_folder
from tests.support.tiny_models import build_tiny_openclip

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {
    "red": (214, 48, 49),
    "orange": (230, 126, 34),
    "yellow": (241, 196, 15),
    "green": (39, 174, 96),
    "blue": (41, 128, 185),
    "purple": (142, 68, 173),
}
BRANDS = ("Acme", "Zenith")

# Image URLs for the API tests: the catalog's folder over HTTP on 127.0.0.1 (its /slow/
# requests wait for `gate`). Clients and servers made by these fixtures allow-list it.
ImageServer = FolderServer

# A loopback port nothing listens on, allow-listed by the API fixtures so that an image
# host that cannot be reached is tested apart from one that is refused.
UNREACHABLE = "127.0.0.1:9"

# The admin key of every test app and server (writes always need a key); the clients that
# write send it, the read-only `client` stays anonymous.
TEST_API_KEY = "lk_test-admin-key-for-the-api-tests"
WRITE_HEADERS = {"X-API-Key": TEST_API_KEY}

# Small limits, so every rejection can be tested with small files.
MAX_IMAGE_BYTES = 300_000
MAX_UPLOAD_BYTES = 1_000_000
MAX_IMAGE_PIXELS = 1_000_000


@dataclass(frozen=True)
class CatalogItem:
    id: str
    path: Path
    title: str
    category: str
    brand: str
    price: float


def draw_product(
    shape: str, rgb: tuple[int, int, int], variant: int, size: int = 96
) -> Image.Image:
    """A coloured shape on white, a little different per variant (never two alike)."""
    image = Image.new("RGB", (size, size), (250, 250, 248))
    draw = ImageDraw.Draw(image)
    pad = 14 + 3 * (variant % 4)
    box = (pad, pad + variant % 3, size - pad, size - pad)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "triangle":
        draw.polygon([(size // 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=rgb)
    else:
        mid = size // 2
        draw.polygon([(mid, box[1]), (box[2], mid), (mid, box[3]), (box[0], mid)], fill=rgb)
    shade = tuple(max(c - 60, 0) for c in rgb)
    draw.line([(box[0], box[3] + 4), (box[2], box[3] + 4)], fill=shade, width=3)
    return image


def api_settings(data_dir: Path, model_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model_checkpoint": str(model_dir),
        "max_image_bytes": MAX_IMAGE_BYTES,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_image_pixels": MAX_IMAGE_PIXELS,
        "index_sync_interval_s": 0.1,
        "ingest_workers": 2,
        "download_retries": 0,
        "download_timeout_s": 30.0,
        "api_key": TEST_API_KEY,
        "allowed_hosts": ["testserver"],  # the Host of FastAPI's TestClient
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_openclip(tmp_path_factory.mktemp("tiny-openclip"))


@pytest.fixture(scope="session")
def catalog_items(tmp_path_factory: pytest.TempPathFactory) -> list[CatalogItem]:
    """24 products: 4 shapes (categories) x 6 colours, two brands, prices 12.50 .. 81.50."""
    folder = tmp_path_factory.mktemp("catalog")
    items = []
    for s, shape in enumerate(SHAPES):
        for c, (color, rgb) in enumerate(COLORS.items()):
            n = s * len(COLORS) + c
            path = folder / f"{color}-{shape}.png"
            draw_product(shape, rgb, n).save(path)
            items.append(
                CatalogItem(
                    id=f"sku-{n:03d}",
                    path=path,
                    title=f"{color.capitalize()} {shape}",
                    category=shape,
                    brand=BRANDS[n % 2],
                    price=12.5 + 3 * n,
                )
            )
    with open(folder / "catalog.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "title", "category", "brand", "price"])
        for item in items:
            writer.writerow(
                [item.id, item.path.name, item.title, item.category, item.brand, item.price]
            )
    return items


@pytest.fixture(scope="session")
def indexed_data(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, catalog_items: list[CatalogItem]
) -> Path:
    """A data dir with the catalog indexed once; tests work on copies of it."""
    data_dir = tmp_path_factory.mktemp("indexed") / "data"
    with Engine(api_settings(data_dir, tiny_model)) as engine:
        report = engine.index_path(catalog_items[0].path.parent / "catalog.csv")
    assert report.added == len(catalog_items) and not report.failed
    return data_dir


def copy_data(indexed_data: Path, where: Path) -> Path:
    target = where / "data"
    shutil.copytree(indexed_data, target)
    return target


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    indexed_data: Path,
    tiny_model: Path,
    image_server: ImageServer,
) -> Iterator[TestClient]:
    """A read-only client shared by a module (tests that write use `writable_client`)."""
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("api"))
    allow = [image_server.allow_entry, UNREACHABLE]
    settings = api_settings(data_dir, tiny_model, fetch_allow_hosts=allow)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def writable_client(
    tmp_path: Path, indexed_data: Path, tiny_model: Path, image_server: ImageServer
) -> Iterator[TestClient]:
    """A client over a fresh copy of the catalog that sends the admin key; image URLs on
    `image_server` are admitted (the only loopback host it may fetch from)."""
    data_dir = copy_data(indexed_data, tmp_path)
    allow = [image_server.allow_entry, UNREACHABLE]
    settings = api_settings(data_dir, tiny_model, fetch_allow_hosts=allow)
    with TestClient(create_app(settings), headers=WRITE_HEADERS) as test_client:
        yield test_client


def png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    env: dict[str, str]


def start_server(
    data_dir: Path, model_dir: Path, *args: str, allow_hosts: Sequence[str] = ()
) -> LiveServer:
    """`lookalike serve` in a subprocess (the real entry point), once it is ready;
    `allow_hosts`: loopback image servers it may fetch from (fetch_allow_hosts)."""
    port = free_port()
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "LOOKALIKE_MODEL_CHECKPOINT": str(model_dir),
        "LOOKALIKE_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "LOOKALIKE_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
        "LOOKALIKE_INDEX_SYNC_INTERVAL_S": "0.1",
        "LOOKALIKE_DOWNLOAD_RETRIES": "0",
        "LOOKALIKE_FETCH_ALLOW_HOSTS": json.dumps(list(allow_hosts)),
        "LOOKALIKE_API_KEY": TEST_API_KEY,
    }
    command = [sys.executable, "-m", "lookalike.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), *args]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`lookalike serve` exited early:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return LiveServer(url, port, data_dir, process, env)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("`lookalike serve` did not become ready in 120 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
    indexed_data: Path,
    tiny_model: Path,
    image_server: ImageServer,
) -> Iterator[LiveServer]:
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("live"))
    server = start_server(data_dir, tiny_model, allow_hosts=[image_server.allow_entry])
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture(scope="module")
def image_server(catalog_items: list[CatalogItem]) -> Iterator[ImageServer]:
    with serve_folder(catalog_items[0].path.parent) as server:
        yield server
