"""A BERT-family sentence encoder in plain numpy: no torch, no sentence-transformers.

Reproduces what sentence-transformers computes for a folder of BERT weights + pooling
(+ normalisation), e.g. all-MiniLM-L6-v2, from its safetensors and tokenizer.json: the
`tokenizers` package splits the text, numpy runs six small layers. Importing numpy,
tokenizers and safetensors costs about a tenth of a second where sentence-transformers
costs seconds, which is most of a cold CLI search; see benchmarks/cold_start.py for the
measured latencies beside the sentence-transformers path.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from lookalike.encode.text.base import TextSource, TextTowerOptions, empty
from lookalike.encode.text.blas import limit_numpy_blas
from lookalike.encode.text.folder import SentenceFolder, read_sentence_folder
from lookalike.errors import ModelError

MODEL_TYPES = ("bert",)
# Prefixes sentence-transformers put before the transformer's own parameter names in its
# state_dict, which the recorded fingerprint hashes: "0.model." since release 6,
# "0.auto_model." before.
STATE_PREFIX = "0.model."
OLDER_STATE_PREFIXES = ("0.auto_model.",)
SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
MAX_HEADER_BYTES = 100 << 20
# A runtime's forward pass: (tokens, mask), both batch x length -> pooled, batch x hidden.
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Bound one forward pass: attention holds batch x heads x length^2 floats.
MAX_BATCH = 64
MAX_BATCH_SQUARES = 1 << 20


def claims(path: Path) -> bool:
    """True for a sentence-transformers folder this tower reproduces exactly."""
    folder = read_sentence_folder(path)
    if folder is None:
        return False
    config = folder.model_config
    return (
        config.get("model_type") in MODEL_TYPES
        and config.get("hidden_act", "gelu") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


@dataclass(frozen=True)
class _Layer:
    # Dense weights stay (out, in) as torch's Linear stores them, mapped from the file so
    # worker processes share one copy (see `_dense` for the product).
    qkv: np.ndarray  # (3 * hidden, hidden): query, key, value in one product
    qkv_bias: np.ndarray
    attention_out: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class NumpyBertTower:
    """TextTower for BERT sentence-transformers folders, computed with numpy."""

    runtime = "numpy"

    def __init__(self, source: TextSource, folder: SentenceFolder, threads: int | None) -> None:
        from tokenizers import Tokenizer

        self.name = source.name
        self.location = str(folder.path)
        self.folder = folder
        self.threads = threads or 1
        limit_numpy_blas(self.threads)
        config = folder.model_config
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        try:
            self.tokenizer = Tokenizer.from_file(str(folder.tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelError(f"cannot read {folder.tokenizer}: {exc}") from exc
        # Set once here and never again: changing them while another thread encodes is
        # what makes a shared tokenizer unsafe.
        self.tokenizer.enable_truncation(folder.max_seq_length)
        self.tokenizer.no_padding()
        tensors = _read_tensors(folder.weights)
        self._digests = _fingerprints(tensors)
        self._load(tensors, int(config["num_hidden_layers"]))

    @property
    def fingerprint(self) -> str:
        return self._digests[STATE_PREFIX]

    def fingerprint_aliases(self) -> tuple[str, ...]:
        return self._older_digests

    @cached_property
    def _older_digests(self) -> tuple[str, ...]:
        tensors = _read_tensors(self.folder.weights)
        return tuple(_fingerprints(tensors, OLDER_STATE_PREFIXES).values())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_with(texts, self.forward)

    def encode_with(self, texts: Sequence[str], forward: Forward) -> np.ndarray:
        """Tokenise, batch by length, run `forward(tokens, mask)` per batch, normalise: the
        same steps around any runtime's forward pass (the ONNX tower passes its own)."""
        if not texts:
            return empty(self.dim)
        if self.folder.do_lower_case:
            texts = [text.lower() for text in texts]
        ids = [self.tokenizer.encode(str(text)).ids for text in texts]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for batch in _batches(ids):
            out[batch] = forward(*self._pad([ids[i] for i in batch]))
        # Unit rows whether or not the folder ends in a Normalize module: the protocol
        # promises them, as `normalize_embeddings=True` always gave them before.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _load(self, tensors: dict[str, np.ndarray], layers: int) -> None:
        def get(key: str) -> np.ndarray:
            for name in (key, f"bert.{key}"):
                if name in tensors:
                    return np.ascontiguousarray(tensors[name], dtype=np.float32)
            raise ModelError(f"{self.folder.weights} has no {key!r}: not a BERT model")

        def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            return get(f"{prefix}.weight"), get(f"{prefix}.bias")

        def dense(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            return get(f"{prefix}.weight"), get(f"{prefix}.bias")

        self.word = get("embeddings.word_embeddings.weight")
        self.positions = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = norm("embeddings.LayerNorm")
        self.layers = []
        for index in range(layers):
            p = f"encoder.layer.{index}"
            parts = [dense(f"{p}.attention.self.{n}") for n in ("query", "key", "value")]
            out, out_bias = dense(f"{p}.attention.output.dense")
            up, up_bias = dense(f"{p}.intermediate.dense")
            down, down_bias = dense(f"{p}.output.dense")
            self.layers.append(
                _Layer(
                    qkv=np.concatenate([w for w, _ in parts]),
                    qkv_bias=np.concatenate([b for _, b in parts]),
                    attention_out=out,
                    attention_out_bias=out_bias,
                    attention_norm=norm(f"{p}.attention.output.LayerNorm"),
                    up=up,
                    up_bias=up_bias,
                    down=down,
                    down_bias=down_bias,
                    output_norm=norm(f"{p}.output.LayerNorm"),
                )
            )

    def _pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids -> (tokens, mask), batch x longest, padded with 0 (the mask hides it)."""
        count, length = len(ids), max(len(row) for row in ids)
        if length > len(self.positions):
            raise ModelError(f"{length} tokens exceed the model's {len(self.positions)}")
        tokens = np.zeros((count, length), dtype=np.int64)
        mask = np.zeros((count, length), dtype=np.float32)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        return tokens, mask

    def forward(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Padded tokens and their mask -> pooled hidden states (not normalised), in numpy."""
        count, length = tokens.shape
        x = self.word[tokens] + self.positions[:length] + self.token_type
        x = _layer_norm(x.reshape(count * length, self.dim), *self.embedding_norm, self.eps)
        # Padding keys get the most negative float: exp() of it is exactly zero.
        key_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        head_dim = self.dim // self.heads
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in self.layers:
            qkv = _dense(x, layer.qkv, layer.qkv_bias)
            qkv = qkv.reshape(count, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = (qkv[0] * scale) @ qkv[1].transpose(0, 1, 3, 2) + key_bias
            context = _softmax(scores) @ qkv[2]
            context = context.transpose(0, 2, 1, 3).reshape(count * length, self.dim)
            attended = _dense(context, layer.attention_out, layer.attention_out_bias)
            x = _layer_norm(x + attended, *layer.attention_norm, self.eps)
            hidden = _gelu(_dense(x, layer.up, layer.up_bias))
            x = _layer_norm(
                x + _dense(hidden, layer.down, layer.down_bias), *layer.output_norm, self.eps
            )
        return _pool(x.reshape(count, length, self.dim), mask, self.folder.pooling)


def build(source: TextSource, options: TextTowerOptions) -> NumpyBertTower:
    folder = read_sentence_folder(Path(source.location))
    if folder is None or not claims(folder.path):
        raise ModelError(f"{source.location} is not a BERT sentence-transformers folder")
    return NumpyBertTower(source, folder, options.threads)


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only arrays mapped from it (no copy).

    The format is an 8-byte little-endian header size, a JSON header naming each tensor's
    dtype, shape and byte range, then the bytes. Mapping it lets processes share the
    pages and reads only what is touched (the rows of the embedding table a query needs).
    """
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise ValueError(f"header size {size} is not plausible")
            header = json.loads(handle.read(size))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
        tensors = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            shape = tuple(int(n) for n in entry["shape"])
            tensors[name] = _as_array(data[begin:end], entry["dtype"], shape)
        return tensors
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing, truncated, foreign
        raise ModelError(f"cannot read {path}: {exc}") from exc


def _as_array(raw: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "BF16":  # numpy has no bfloat16: its bits are the top half of a float32
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dtype not in SAFETENSORS_DTYPES:
        raise ValueError(f"tensor dtype {dtype} is not supported")
    array = raw.view(SAFETENSORS_DTYPES[dtype]).reshape(shape)
    # Writers pad the header so data is aligned; a file that is not gets a private copy.
    return array if array.flags.aligned else array.copy()


def _fingerprints(
    tensors: dict[str, np.ndarray], prefixes: Sequence[str] = (STATE_PREFIX,)
) -> dict[str, str]:
    """The fingerprint sentence-transformers' state_dict gave (see `st_library`), per prefix.

    The state_dict holds the floating-point parameters under the prefix; integer buffers
    in the file (position ids) are not persistent there, and a "bert." prefix from a
    task model is stripped when the base model loads.
    """
    entries = sorted(
        (key.removeprefix("bert."), array)
        for key, array in tensors.items()
        if np.issubdtype(array.dtype, np.floating) and not key.startswith("cls.")
    )
    result = {}
    for prefix in prefixes:
        digest = hashlib.sha256()
        for key, array in entries:
            digest.update(f"{prefix}{key}".encode())
            digest.update(str(tuple(array.shape)).encode())
            digest.update(np.ascontiguousarray(array).data)
        result[prefix] = digest.hexdigest()[:16]
    return result


def _batches(ids: list[list[int]]) -> Iterator[list[int]]:
    """Indices of texts in batches of similar length: less padding, bounded memory."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batch: list[int] = []
    for index in order:
        longest = len(ids[index])  # ascending: the newcomer is the longest
        if batch and (len(batch) >= MAX_BATCH or (len(batch) + 1) * longest**2 > MAX_BATCH_SQUARES):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight.T + bias, computed as (weight @ x.T).T: with a few tokens the product is
    bound by reading the weights, which BLAS streams faster in this orientation (1.5x
    for a one-text query, measured; the same for 32 texts)."""
    return (weight @ x.T).T + bias


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    centred *= 1.0 / np.sqrt(variance + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = np.float32(1.061405429) * t
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    erf_abs = 1.0 - poly * np.exp(-z * z)
    # gelu(x) = x * (1 + erf(x / sqrt 2)) / 2, with erf odd: sign(x) * erf(|x| / sqrt 2)
    return 0.5 * x * (1.0 + np.copysign(erf_abs, x))


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls_token":
        return hidden[:, 0]
    if mode == "max_tokens":
        return np.where(mask[:, :, None] > 0, hidden, np.float32(-1e9)).max(axis=1)
    total = (mask[:, None, :] @ hidden)[:, 0]
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    if mode == "mean_sqrt_len_tokens":
        return total / np.sqrt(counts)
    return total / counts
