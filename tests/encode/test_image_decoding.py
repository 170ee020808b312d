"""Image decoding and validation: every bad input is a typed InvalidImage with a reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lookalike.encode.images import ImageLimits, decode_image
from lookalike.errors import ImageTooLarge, InvalidImage, UnsupportedImage

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000, min_side=50)


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_good_png_decodes_to_rgb():
    image = decode_image(encoded(Image.new("L", (80, 60), 128)), LIMITS)
    assert image.mode == "RGB" and image.size == (80, 60)


def test_zero_byte_file():
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"", LIMITS)


def test_not_an_image_is_unsupported():
    with pytest.raises(UnsupportedImage, match="not an image"):
        decode_image(b"%PDF-1.4 this is a pdf, not a picture" * 10, LIMITS)


def test_truncated_jpeg():
    data = encoded(Image.new("RGB", (200, 200), "red"), "JPEG")
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_corrupt_png_body():
    data = bytearray(encoded(Image.effect_noise((120, 120), 50)))
    data[200:260] = b"\x00" * 60
    with pytest.raises(InvalidImage):
        decode_image(bytes(data), LIMITS)


def test_decompression_bomb_rejected_before_decoding():
    # 3000 x 3000 of one colour compresses to a few KB but would be 9 MP decoded.
    data = encoded(Image.new("L", (3000, 3000), 0))
    assert len(data) < LIMITS.max_bytes
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(data, LIMITS)


def test_too_many_bytes():
    with pytest.raises(ImageTooLarge, match="over the limit"):
        decode_image(b"\x89PNG" + b"0" * 2_000_001, LIMITS)


def test_too_small():
    with pytest.raises(InvalidImage, match="too small"):
        decode_image(encoded(Image.new("RGB", (40, 400))), LIMITS)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (120, 60), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(encoded(image, "JPEG", exif=exif), LIMITS)
    assert decoded.size == (60, 120)


def test_transparency_composited_on_white():
    image = Image.new("RGBA", (60, 60), (255, 0, 0, 0))
    decoded = decode_image(encoded(image), LIMITS)
    assert decoded.mode == "RGB" and decoded.getpixel((5, 5)) == (255, 255, 255)


def test_reason_names_the_source():
    with pytest.raises(InvalidImage) as caught:
        decode_image(b"", LIMITS, source="shoes/42.jpg")
    assert "shoes/42.jpg" in str(caught.value) and caught.value.reason == "empty file (0 bytes)"
