"""Every way an upload can be bad gets a clear 4xx with the reason, never a 500."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.api_catalog import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_UPLOAD_BYTES,
    draw_product,
    png_bytes,
)


def noise_png(side: int) -> bytes:
    """Incompressible pixels: the PNG is about 3 * side^2 bytes."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(pixels))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG that decodes to width x height pixels (one deflated run of zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(b"\0" * ((width + 1) * height), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    draw_product("circle", (200, 30, 30), 1).save(buffer, "JPEG")
    return buffer.getvalue()


BAD_IMAGES = {
    "not an image": (
        b"just some text, not a picture\n" * 20,
        415,
        "UnsupportedImage",
        "not an image",
    ),
    "empty file": (b"", 400, "InvalidImage", "empty"),
    "truncated": (jpeg_bytes()[:400], 400, "InvalidImage", "truncated"),
    "too small": (png_bytes(Image.new("RGB", (20, 20), "red")), 400, "InvalidImage", "too small"),
    "decompression bomb": (
        bomb_png(2000, 2000),
        400,
        "DecompressionBomb",
        "decompression bomb",
    ),
}


@pytest.mark.parametrize("case", BAD_IMAGES, ids=list(BAD_IMAGES))
def test_bad_images_are_refused_with_the_reason(client: TestClient, case: str) -> None:
    data, status, error_type, reason = BAD_IMAGES[case]
    assert case != "decompression bomb" or len(data) < 20_000  # small file, huge image
    response = client.post("/v1/search/image", files={"image": ("bad.png", data, "image/png")})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert reason in error["message"]
    assert "bad.png" in error["message"]  # which file it was


def test_bomb_fixture_really_is_over_the_pixel_limit() -> None:
    image = Image.open(io.BytesIO(bomb_png(2000, 2000)))
    assert image.size[0] * image.size[1] > MAX_IMAGE_PIXELS


@pytest.mark.parametrize("case", ["not an image", "truncated", "decompression bomb"])
def test_bad_images_in_combined_search(client: TestClient, case: str) -> None:
    data, status, error_type, _ = BAD_IMAGES[case]
    response = client.post("/v1/search", files={"image": ("bad.png", data, "image/png")})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


def test_image_over_the_byte_limit_is_413(client: TestClient) -> None:
    data = noise_png(400)
    assert MAX_IMAGE_BYTES < len(data) < MAX_UPLOAD_BYTES
    response = client.post("/v1/search/image", files={"image": ("big.png", data, "image/png")})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "ImageTooLarge"
    assert str(MAX_IMAGE_BYTES) in response.json()["error"]["message"]


def test_body_over_the_upload_limit_is_413_by_content_length(client: TestClient) -> None:
    data = b"\0" * (MAX_UPLOAD_BYTES + 1)
    response = client.post("/v1/search/image", files={"image": ("huge.png", data, "image/png")})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "ContentTooLarge"
    assert str(MAX_UPLOAD_BYTES) in error["message"]


def test_chunked_body_over_the_upload_limit_is_413(client: TestClient) -> None:
    def chunks():  # no Content-Length: the limit has to count what streams in
        for _ in range(40):
            yield b"\0" * 65536

    response = client.post(
        "/v1/search", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "ContentTooLarge"


def test_base64_image_over_the_byte_limit_is_413(client: TestClient) -> None:
    import base64

    data = base64.b64encode(noise_png(400)).decode()
    response = client.post("/v1/search", json={"images": [data]})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "ImageTooLarge"
