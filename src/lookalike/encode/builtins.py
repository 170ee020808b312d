"""Built-in encoder families, registered with the factory."""

from __future__ import annotations

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.factory import register_encoder
from lookalike.encode.sources import ModelSource


@register_encoder("hub", "hf-hub", "openclip-file", "openclip-dir")
def _open_clip(source: ModelSource, settings: Settings) -> Encoder:
    from lookalike.encode.openclip import OpenClipEncoder

    return OpenClipEncoder(
        source,
        device=settings.device,
        batch_size=settings.encode_batch_size,
        cache_dir=str(settings.model_cache_dir) if settings.model_cache_dir else None,
        threads=settings.torch_threads,
    )


@register_encoder("lit-dir")
def _lit(source: ModelSource, settings: Settings) -> Encoder:
    from lookalike.encode.lit import LitEncoder

    return LitEncoder.from_source(
        source,
        text_model=settings.text_model,
        runtime=settings.encoder_runtime,
        export_dir=str(settings.onnx_export_dir()),
        device=settings.device,
        batch_size=settings.encode_batch_size,
        threads=settings.torch_threads,
    )


@register_encoder("onnx-dir")
def _onnx(source: ModelSource, settings: Settings) -> Encoder:
    from lookalike.encode.onnx import OnnxEncoder

    return OnnxEncoder(
        source,
        device=settings.device,
        batch_size=settings.encode_batch_size,
        threads=settings.torch_threads,
    )
