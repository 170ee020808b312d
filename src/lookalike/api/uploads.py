"""Image bytes out of a request: uploaded files (read with a cap) and base64 strings."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from PIL import Image
from starlette.datastructures import UploadFile

from lookalike.encode import ImageLimits, decode_images
from lookalike.errors import ImageTooLarge, InvalidImage


@dataclass
class ImageUpload:
    name: str  # how error messages refer to it
    data: bytes


async def read_upload(upload: UploadFile, max_bytes: int) -> ImageUpload:
    """The file's bytes; reads at most one byte past the limit, never the whole of a huge file."""
    name = upload.filename or "upload"
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"over the limit of {max_bytes} bytes", source=name)
    return ImageUpload(name, data)


def decode_uploads(
    uploads: list[ImageUpload], limits: ImageLimits, shrink_to: int | None = None
) -> list[Image.Image]:
    """Decode and validate query images, the request's pixel budget checked first from
    their headers, then one image at a time, shrunk to `shrink_to`; errors name the file.
    Blocking (CPU)."""
    return decode_images([(u.data, u.name) for u in uploads], limits, shrink_to=shrink_to)


def decode_base64_image(text: str, max_bytes: int, *, index: int = 0) -> ImageUpload:
    """Base64 (or a `data:image/...;base64,` URL) -> bytes, checked against the byte limit."""
    source = f"images[{index}]"
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidImage("a data URL must be base64-encoded", source=source)
    # 4 base64 characters carry 3 bytes: refuse before decoding anything huge.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise ImageTooLarge(f"over the limit of {max_bytes} bytes", source=source)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"not valid base64: {exc}", source=source) from exc
    if len(data) > max_bytes:
        raise ImageTooLarge(f"over the limit of {max_bytes} bytes", source=source)
    return ImageUpload(source, data)
