"""Encoders: images and text into one embedding space; image decoding and validation."""

from lookalike.encode.base import Encoder, EncoderInfo, l2_normalize
from lookalike.encode.factory import create_encoder, model_source
from lookalike.encode.images import ImageLimits, content_hash, decode_image, decode_images

__all__ = [
    "Encoder",
    "EncoderInfo",
    "ImageLimits",
    "content_hash",
    "create_encoder",
    "decode_image",
    "decode_images",
    "l2_normalize",
    "model_source",
]
