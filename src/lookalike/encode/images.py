"""Decode and validate images: every way an upload or a file can be bad ends in InvalidImage.

What an image may cost is decided from its header, before any pixel is decoded: its format
must be on the allow-list, its size within the per-image pixel limit, and the images of one
request within the request's pixel budget together. Decoding then runs one image at a time
and shrinks each as early as it can (JPEGs decode at a reduced scale in draft mode, others
are box-reduced right after decoding, before any mode conversion), so the memory a request
holds is about one full-size image, never all of them. Across requests, a process-wide
gate (`decode_gate.py`) admits at most the budget's pixels to decoding at once.

Only the decoders of `SUPPORTED_FORMATS` stay registered with Pillow in this process: the
others (EPS, which runs Ghostscript; PSD, FITS, ...) are unregistered when this module is
imported, so even an `Image.open` without `formats=` cannot reach them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import get_args

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike.config import DEFAULT_IMAGE_FORMATS, ImageFormat
from lookalike.encode.decode_gate import DecodeGate
from lookalike.errors import DecompressionBomb, ImageTooLarge, InvalidImage, UnsupportedImage

# Truncated files must fail loudly, never decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

SUPPORTED_FORMATS: tuple[str, ...] = get_args(ImageFormat)
# A shrunk image keeps at least this many times the wanted side, so the model's own resize
# afterwards looks the same as one from the full image (Pillow's `reducing_gap` idea).
REDUCING_GAP = 2
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr", "RGBX")
BAND_PIXELS = 1_000_000  # about what a band being reduced holds (x its bytes per pixel)


def _unregister_other_decoders() -> None:
    """Leave Pillow able to open only SUPPORTED_FORMATS, whoever calls `Image.open`."""
    Image.init()  # import every plugin now, so none registers itself later
    for name in list(Image.OPEN):
        if name not in SUPPORTED_FORMATS:
            del Image.OPEN[name]
    Image.ID[:] = [name for name in Image.ID if name in SUPPORTED_FORMATS]


_unregister_other_decoders()


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # one image
    min_side: int = 50
    max_request_pixels: int = 100_000_000  # all the images of one request together
    formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    # Shared by every decode with these limits: at most max_request_pixels at once.
    gate: DecodeGate | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings) -> ImageLimits:
        return cls(
            settings.max_image_bytes,
            settings.max_image_pixels,
            settings.min_image_side,
            settings.max_request_pixels,
            tuple(settings.image_formats),
            DecodeGate(settings.max_request_pixels),
        )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_size(data: bytes, limits: ImageLimits, *, source: str | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, after every check that needs no decoding:
    bytes, format, per-image pixels, smallest side."""
    return _size(_open(data, limits, source), limits, source)


def check_request_pixels(
    images: Sequence[tuple[bytes, str | None]], limits: ImageLimits
) -> list[tuple[int, int]]:
    """The sizes of a request's images (bytes, source), from their headers; ImageTooLarge
    when together they are over `limits.max_request_pixels`. Nothing is decoded."""
    sizes = [image_size(data, limits, source=source) for data, source in images]
    total = sum(width * height for width, height in sizes)
    if total > limits.max_request_pixels:
        raise ImageTooLarge(
            f"{len(sizes)} image(s) of {total} pixels together are over this request's "
            f"budget of {limits.max_request_pixels} pixels; send fewer or smaller images"
        )
    return sizes


def decode_images(
    images: Sequence[tuple[bytes, str | None]],
    limits: ImageLimits,
    *,
    shrink_to: int | None = None,
) -> list[Image.Image]:
    """A request's images (bytes, source): the pixel budget checked from the headers first,
    then each decoded and shrunk in turn (see `decode_image`)."""
    check_request_pixels(images, limits)
    return [
        decode_image(data, limits, source=source, shrink_to=shrink_to) for data, source in images
    ]


def decode_image(
    data: bytes,
    limits: ImageLimits,
    *,
    source: str | None = None,
    shrink_to: int | None = None,
) -> Image.Image:
    """Bytes -> upright RGB PIL image, or InvalidImage with the reason.

    `shrink_to`: the side the image is wanted at (the model's input size, a thumbnail's);
    the result keeps its aspect ratio and its shorter side stays at least REDUCING_GAP times
    this, but no more than needed: JPEGs are decoded at a reduced scale, other formats are
    box-reduced right after decoding.
    """
    image = _open(data, limits, source)
    width, height = _size(image, limits, source)
    admitted = limits.gate.admit(width * height) if limits.gate else contextlib.nullcontext()
    try:
        with admitted, warnings.catch_warnings():
            # Pillow's own bomb guard warns before it errors; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if shrink_to is not None:
                wanted = REDUCING_GAP * shrink_to
                image.draft("RGB", (wanted, wanted))  # JPEG only; others ignore it
            image.load()
            if shrink_to is not None:
                image = _reduce(image, REDUCING_GAP * shrink_to)
            return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"decompression bomb: {exc}", source=source) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}", source=source) from exc


def _open(data: bytes, limits: ImageLimits, source: str | None) -> ImageFile.ImageFile:
    """The image with its header read (no pixels yet), in an allowed format."""
    if not data:
        raise InvalidImage("empty file (0 bytes)", source=source)
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"{len(data)} bytes is over the limit of {limits.max_bytes} bytes", source=source
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=list(limits.formats))
    except UnidentifiedImageError as exc:
        allowed = ", ".join(limits.formats)
        raise UnsupportedImage(
            f"not an image, or not one of the formats we read ({allowed})", source=source
        ) from exc
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"decompression bomb: {exc}", source=source) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}", source=source) from exc


def _size(image: Image.Image, limits: ImageLimits, source: str | None) -> tuple[int, int]:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise DecompressionBomb(
            f"{width}x{height} pixels is over the limit of {limits.max_pixels} "
            "(possible decompression bomb)",
            source=source,
        )
    if min(width, height) < limits.min_side:
        raise InvalidImage(
            f"{width}x{height} is too small (smallest side must be >= {limits.min_side} px)",
            source=source,
        )
    return width, height


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Box-reduce by the largest whole factor that keeps the shorter side >= min_side.

    Band by band: Pillow reduces RGBA through a premultiplied copy of the whole image, and
    modes it cannot reduce (palette, 1-bit, 16-bit) must be converted first; per band, those
    copies are a band's size, not the image's. Bands are whole blocks of `factor` rows, so
    the result is the same as reducing the image at once."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    mode = image.mode if image.mode in REDUCIBLE_MODES else _reducible_mode(image)
    width, height = image.size
    rows = factor * max(1, BAND_PIXELS // (width * factor))
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        if band.mode != mode:
            band = band.convert(mode)
        reduced.paste(band.reduce(factor), (0, top // factor))
    reduced.info = dict(image.info)  # the EXIF orientation, for exif_transpose
    return reduced


def _reducible_mode(image: Image.Image) -> str:
    has_alpha = "transparency" in image.info or image.mode in ("PA", "LA")
    return "RGBA" if has_alpha else "RGB"


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
