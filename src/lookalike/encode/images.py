"""Decode and validate images: every way an upload or a file can be bad ends in InvalidImage."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike.errors import DecompressionBomb, ImageTooLarge, InvalidImage, UnsupportedImage

# Truncated files must fail loudly, never decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 50

    @classmethod
    def from_settings(cls, settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels, settings.min_image_side)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, limits: ImageLimits, *, source: str | None = None) -> Image.Image:
    """Bytes -> upright RGB PIL image, or InvalidImage with the reason."""
    if not data:
        raise InvalidImage("empty file (0 bytes)", source=source)
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"{len(data)} bytes is over the limit of {limits.max_bytes} bytes", source=source
        )
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns before it errors; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise DecompressionBomb(
                    f"{width}x{height} pixels is over the limit of {limits.max_pixels} "
                    "(possible decompression bomb)",
                    source=source,
                )
            image.load()
    except UnidentifiedImageError as exc:
        raise UnsupportedImage("not an image, or a format we cannot read", source=source) from exc
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"decompression bomb: {exc}", source=source) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}", source=source) from exc
    if min(width, height) < limits.min_side:
        raise InvalidImage(
            f"{width}x{height} is too small (smallest side must be >= {limits.min_side} px)",
            source=source,
        )
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas composited on white (as product photos are shown)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
