"""What an image may cost, decided before decoding: the format allow-list (no Ghostscript for
EPS, whoever opens it), the per-request pixel budget read from headers, and decoding that
shrinks each image early without changing what the model sees."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, UnidentifiedImageError

from lookalike.config import Settings
from lookalike.encode.decode_gate import DecodeGate
from lookalike.encode.images import (
    ImageLimits,
    check_request_pixels,
    decode_image,
    decode_images,
    image_size,
)
from lookalike.errors import DecompressionBomb, ImageTooLarge, UnsupportedImage

LIMITS = ImageLimits(max_bytes=5_000_000, max_pixels=40_000_000, min_side=50)

EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 100 100
%%EndComments
newpath 10 10 moveto 90 90 lineto stroke
showpage
%%EOF
"""


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `gs` first on PATH that only leaves a mark when it runs."""
    marker = tmp_path / "gs-ran"
    script = tmp_path / "bin" / "gs"
    script.parent.mkdir()
    script.write_text(
        f'#!/bin/sh\ntouch {marker}\n[ "$1" = --version ] && echo 10.02.1 && exit 0\nexit 1\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # look it up again
    monkeypatch.setattr(EpsImagePlugin, "gs_windows_binary", None)
    return marker


def test_eps_is_refused_without_running_ghostscript(fake_ghostscript: Path) -> None:
    # The control: Pillow's EPS decoder itself does run whatever `gs` it finds.
    with pytest.raises((OSError, subprocess.CalledProcessError)):
        EpsImagePlugin.EpsImageFile(io.BytesIO(EPS)).load()
    assert fake_ghostscript.exists()
    fake_ghostscript.unlink()

    with pytest.raises(UnsupportedImage, match="formats we read"):
        decode_image(EPS, LIMITS)
    with pytest.raises(UnidentifiedImageError):  # even without `formats=`: not registered
        Image.open(io.BytesIO(EPS))
    assert not fake_ghostscript.exists()


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "QOI"])
def test_formats_off_the_list_are_unsupported(fmt: str) -> None:
    data = encoded(Image.new("RGB", (64, 64), "red"), fmt)
    with pytest.raises(UnsupportedImage):
        decode_image(data, LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_default_formats_decode(fmt: str) -> None:
    image = decode_image(encoded(Image.new("RGB", (80, 60), "red"), fmt), LIMITS)
    assert image.mode == "RGB" and image.size == (80, 60)


def test_the_allow_list_is_a_setting() -> None:
    settings = Settings(_env_file=None, image_formats=["jpeg", "png"])
    limits = ImageLimits.from_settings(settings)
    assert limits.formats == ("JPEG", "PNG")
    decode_image(encoded(Image.new("RGB", (60, 60)), "PNG"), limits)
    with pytest.raises(UnsupportedImage, match=r"JPEG, PNG"):
        decode_image(encoded(Image.new("RGB", (60, 60)), "GIF"), limits)
    with pytest.raises(ValueError, match="EPS"):
        Settings(_env_file=None, image_formats=["EPS"])


def test_gif_decodes_its_first_frame() -> None:
    frames = [Image.new("RGB", (60, 60), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(buffer.getvalue(), LIMITS)
    assert image.getpixel((30, 30))[0] > 200 and image.getpixel((30, 30))[2] < 50


def big_blank_png(width: int, height: int) -> bytes:
    return encoded(Image.new("L", (width, height), 0))


def test_a_request_over_the_pixel_budget_is_refused_from_the_headers() -> None:
    limits = ImageLimits(max_pixels=40_000_000, max_request_pixels=100_000_000)
    blank = big_blank_png(6000, 6000)  # 36 MP in a few dozen KB
    # The body of the last one is garbage: had anything been decoded, this would be a
    # corrupt-image error, not the budget's.
    broken = blank[:60] + b"\x00" * (len(blank) - 60)
    assert image_size(broken, limits) == (6000, 6000)
    with pytest.raises(ImageTooLarge, match="budget of 100000000 pixels") as refused:
        decode_images([(blank, "a"), (blank, "b"), (broken, "c")], limits)
    assert refused.value.http_status == 413
    # Within the budget, the same images are fine.
    assert check_request_pixels([(blank, "a"), (blank, "b")], limits) == [(6000, 6000)] * 2


def test_one_image_over_the_per_image_limit_is_still_a_bomb() -> None:
    limits = ImageLimits(max_pixels=1_000_000, max_request_pixels=100_000_000)
    with pytest.raises(DecompressionBomb):
        decode_images([(big_blank_png(2000, 2000), "a")], limits)


def test_jpegs_decode_at_a_reduced_scale_in_draft_mode() -> None:
    photo = Image.effect_noise((2400, 1600), 40).convert("RGB")
    image = decode_image(encoded(photo, "JPEG"), LIMITS, shrink_to=224)
    # DCT scaling by 1/2, 1/4 or 1/8, the largest that keeps both sides >= 2 x 224.
    assert image.size == (1200, 800)
    photo = Image.new("RGB", (4000, 4000), "teal")
    assert decode_image(encoded(photo, "JPEG"), LIMITS, shrink_to=224).size == (500, 500)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_other_formats_are_box_reduced_before_conversion(mode: str) -> None:
    source = Image.new(mode, (3000, 1000), 1)
    image = decode_image(encoded(source, "PNG"), LIMITS, shrink_to=224)
    assert image.mode == "RGB"
    assert image.size == (1000 * 3 // 2, 500)  # factor 2: 1000 // 448
    assert min(image.size) >= 2 * 224


def test_shrinking_keeps_the_exif_orientation() -> None:
    image = Image.new("RGB", (2400, 1200), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    for fmt in ("JPEG", "PNG", "WEBP"):
        decoded = decode_image(encoded(image, fmt, exif=exif), LIMITS, shrink_to=100)
        assert decoded.size[0] < decoded.size[1], fmt


def test_what_the_model_sees_barely_changes() -> None:
    """The model resizes to its input size anyway: from the shrunk image or the full one,
    the pixels it gets differ by about one grey level (1/255) on average."""
    rng = np.random.default_rng(0)
    low = rng.integers(0, 255, (30, 45, 3), dtype=np.uint8)
    photo = Image.fromarray(low).resize((1800, 1200), Image.Resampling.BICUBIC)
    for fmt in ("PNG", "JPEG"):
        data = encoded(photo, fmt, quality=95) if fmt == "JPEG" else encoded(photo, fmt)
        full = decode_image(data, LIMITS)
        shrunk = decode_image(data, LIMITS, shrink_to=224)
        assert shrunk.size[1] <= full.size[1] // 2
        size = (336, 224)
        a = np.asarray(full.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
        b = np.asarray(shrunk.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
        assert np.abs(a - b).mean() < 1.5, fmt


def test_decoding_holds_at_most_the_budget_at_once_across_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight threads each decode a 2000 x 2000 image (4 MP) under one gate of 10 MP: no
    more than two are ever decoding at once."""
    import threading
    import time

    settings = Settings(_env_file=None, max_request_pixels=10_000_000)
    limits = ImageLimits.from_settings(settings)
    assert limits.gate is not None and limits.gate.capacity == 10_000_000
    data = big_blank_png(2000, 2000)
    seen: list[int] = []
    real_load = Image.Image.load

    def slow_load(self: Image.Image):  # type: ignore[no-untyped-def]
        seen.append(limits.gate.in_flight)
        time.sleep(0.05)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", slow_load)
    threads = [threading.Thread(target=decode_image, args=(data, limits)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(seen) == 8_000_000  # two at a time, never three
    assert limits.gate.in_flight == 0


def test_one_image_larger_than_the_gate_still_decodes_alone() -> None:
    limits = ImageLimits(max_pixels=40_000_000, gate=DecodeGate(1_000_000))
    assert decode_image(big_blank_png(2000, 2000), limits, shrink_to=64).size == (134, 134)
    assert limits.gate.in_flight == 0


def test_a_gate_travels_as_a_fresh_one() -> None:
    import pickle

    gate = DecodeGate(5)
    with gate.admit(3):
        copy = pickle.loads(pickle.dumps(gate))
    assert (copy.capacity, copy.in_flight) == (5, 0)


def test_freed_image_memory_goes_back_to_the_os_on_glibc() -> None:
    import platform

    from lookalike.encode.decode_gate import return_freed_memory_promptly

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert return_freed_memory_promptly() is True
