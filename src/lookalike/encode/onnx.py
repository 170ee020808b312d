"""CLIP towers on ONNX Runtime: the same embeddings as open_clip, faster on a CPU.

Loads a directory written by `lookalike export-onnx`. Preprocessing and tokenising reuse
open_clip's own code with the exported settings, so inputs are bit-identical to the torch
path; only the network runs elsewhere. CUDA is used when onnxruntime has it and the
device setting allows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.encode.base import EncoderInfo, LazyModel, encode_images_batched, l2_normalize
from lookalike.encode.ort_cache import session_options
from lookalike.encode.sources import ONNX_CONFIG, ModelSource
from lookalike.errors import ConfigError, ModelError


class OnnxEncoder(LazyModel):
    def __init__(
        self,
        source: ModelSource,
        *,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.directory = Path(source.location)
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        try:
            self.config: dict[str, Any] = json.loads((self.directory / ONNX_CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {self.directory / ONNX_CONFIG}: {exc}") from exc
        missing = {"model_id", "dim", "image_size", "files", "preprocess", "tokenizer"} - set(
            self.config
        )
        if missing:
            raise ConfigError(f"{self.directory / ONNX_CONFIG} lacks {sorted(missing)}")

    def _load(self) -> None:
        import onnxruntime as ort
        from open_clip.tokenizer import SimpleTokenizer
        from open_clip.transform import PreprocessCfg, image_transform_v2

        options = session_options(self.threads or (os.cpu_count() or 1))
        providers = self._providers(ort.get_available_providers())
        try:
            self._image = ort.InferenceSession(
                str(self.directory / self.config["files"]["image"]), options, providers=providers
            )
            self._text = ort.InferenceSession(
                str(self.directory / self.config["files"]["text"]), options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load ONNX model {self.directory}: {exc}") from exc
        cfg = dict(self.config["preprocess"])
        for key in ("size", "mean", "std"):
            if isinstance(cfg.get(key), list):
                cfg[key] = tuple(cfg[key])
        self._preprocess = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
        tok = self.config["tokenizer"]
        self._tokenizer = SimpleTokenizer(
            context_length=int(tok["context_length"]), clean=tok.get("clean", "lower")
        )

    def _providers(self, available: list[str]) -> list[str]:
        cuda = "CUDAExecutionProvider" in available
        if self.device == "cuda" and not cuda:
            raise ModelError("device is cuda but onnxruntime has no CUDAExecutionProvider")
        if self.device != "cpu" and cuda:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(
            "onnx",
            self.source.display_name,
            self.model_id,
            int(self.config["dim"]),
            int(self.config["image_size"]),
        )

    @property
    def model_id(self) -> str:
        return str(self.config["model_id"])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        self.ensure_loaded()
        return self._preprocess(image).numpy()

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.ensure_loaded()
        return self._run(self._image, "pixels", np.asarray(pixels, dtype=np.float32))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return encode_images_batched(self, images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.ensure_loaded()
        if not texts:
            return np.zeros((0, int(self.config["dim"])), dtype=np.float32)
        tokens = self._tokenizer(list(texts)).numpy().astype(np.int64)
        return self._run(self._text, "tokens", tokens)

    def _run(self, session: Any, name: str, inputs: np.ndarray) -> np.ndarray:
        outputs = [
            session.run(
                None, {name: np.ascontiguousarray(inputs[start : start + self.batch_size])}
            )[0]
            for start in range(0, len(inputs), self.batch_size)
        ]
        if not outputs:
            return np.zeros((0, int(self.config["dim"])), dtype=np.float32)
        return l2_normalize(np.concatenate(outputs))
