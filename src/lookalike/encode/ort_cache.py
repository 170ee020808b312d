"""A model's ONNX Runtime form, exported once, checked, and cached on disk.

A tower that can run on ONNX Runtime hands `cached_export` a way to write its fp32 graph,
a way to embed a fixed sample with a session, and its own (native) embeddings of that
sample. The first call writes the fp32 graph and checks it against the native vectors
(cosine >= FP32_MIN_COSINE on every sample row: the catalog's stored vectors came from
the native tower); then it quantises the weights to int8 and keeps the int8 graph only if
every sample row stays within INT8_MIN_COSINE of fp32 and it ran the sample faster. How
long each runtime took on the sample is recorded too: "auto" serves the export only
where it beat the native runtime. The decision, the measured cosines
and the served file's SHA-256 go into a small JSON record beside the files; later calls
(and other processes) read the record, check the hash, and load without exporting again.
A missing, damaged or foreign file means a new export, never a crash; ONNX files are
protobuf, nothing is unpickled.

Files are keyed by a stem the caller derives from its weights' fingerprint, so a changed
model never meets a stale export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.encode.sources import EXPORTS_FOLDER
from lookalike.errors import ModelError
from lookalike.files.atomic import atomic_write, write_json_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99
PRECISIONS = ("int8", "fp32")

Session = Any  # onnxruntime.InferenceSession: typed loosely, onnxruntime is optional


@dataclass(frozen=True)
class CachedModel:
    """An exported model ready to serve: its session and the record of how it was chosen."""

    session: Session
    path: Path
    precision: str  # "int8" or "fp32"
    record: dict[str, Any]
    exported: bool  # this call wrote it (False: read from the cache)

    @property
    def runtime(self) -> str:
        return f"onnxruntime-{self.precision}"

    @property
    def faster_than_native(self) -> bool:
        """Whether it beat the native runtime on the sample when it was exported."""
        return bool(self.record.get("faster_than_native", True))

    def slower_reason(self) -> str:
        times = self.record.get("sample_ms") or {}
        return (
            f"ONNX Runtime ({self.precision}, {times.get(self.precision)} ms) was slower than "
            f"the native runtime ({times.get('native')} ms) on the sample at export"
        )


def onnxruntime_available() -> bool:
    """Whether onnxruntime imports here (the `onnx` extra, which the main job installs)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_folder(model_folder: Path, cache_dir: Path) -> Path:
    """Where a model's exports live: beside the model when its folder is ours to write
    (not read-only, not an installed package's), else `cache_dir`."""
    if _writable(model_folder) and not _installed_package(model_folder):
        return model_folder / EXPORTS_FOLDER
    return cache_dir


def read_record(folder: Path, stem: str) -> dict[str, Any] | None:
    """The record of a finished export, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        return None
    if record.get("precision") not in PRECISIONS or not isinstance(record.get("file"), str):
        return None
    return record


def cached_export(
    folder: Path,
    stem: str,
    *,
    write_fp32: Callable[[Path], None],
    embed: Callable[[Session], np.ndarray],
    reference: Callable[[], np.ndarray],
    threads: int = 1,
    quantize: bool = True,
) -> CachedModel:
    """The cached export `folder/stem*`, loaded; exported (and checked) first when missing
    or damaged. Raises ModelError when the export does not reproduce `reference`."""
    record = read_record(folder, stem)
    if record is not None:
        path = folder / Path(record["file"]).name
        if _sha256(path) == record.get("sha256"):
            try:
                session = open_session(path, threads)
            except ModelError as exc:
                log.warning("re-exporting %s: %s", path, exc)
            else:
                return CachedModel(session, path, record["precision"], record, exported=False)
        else:
            log.warning("re-exporting %s: the file is missing or not the one recorded", path)
    return _export(folder, stem, write_fp32, embed, reference, threads, quantize)


def session_options(threads: int) -> Any:
    """Options (an `onnxruntime.SessionOptions`) for every ONNX Runtime session Lookalike
    opens: `threads` intra-op threads that sleep when idle (spinning workers stole the cores
    FAISS and the server's other requests needed: benchmarks/README.md), one inter-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_session(path: Path, threads: int) -> Session:
    """An ONNX Runtime CPU session (`session_options`)."""
    import onnxruntime as ort

    options = session_options(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine between two (n, d) matrices."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.sum(a * b, axis=1).min())


def _export(
    folder: Path,
    stem: str,
    write_fp32: Callable[[Path], None],
    embed: Callable[[Session], np.ndarray],
    reference: Callable[[], np.ndarray],
    threads: int,
    quantize: bool,
) -> CachedModel:
    started = time.perf_counter()
    fp32_path, int8_path = folder / f"{stem}-fp32.onnx", folder / f"{stem}-int8.onnx"
    try:
        atomic_write(fp32_path, lambda tmp: write_fp32(Path(tmp)))
    except OSError as exc:
        raise ModelError(f"cannot write the ONNX export {fp32_path}: {exc}") from exc
    fp32 = open_session(fp32_path, threads)
    fp32_vectors, fp32_ms = _timed(lambda: embed(fp32))
    native_vectors, native_ms = _timed(reference)
    fp32_cosine = min_cosine(fp32_vectors, native_vectors)
    if fp32_cosine < FP32_MIN_COSINE:
        raise ModelError(
            f"the ONNX export {fp32_path} does not reproduce the model "
            f"(min cosine {fp32_cosine:.6f} < {FP32_MIN_COSINE})"
        )
    int8_cosine = int8_ms = None
    chosen, session, chosen_ms = "fp32", fp32, fp32_ms
    if quantize:
        try:
            atomic_write(int8_path, lambda tmp: quantize_int8(fp32_path, Path(tmp)))
            int8 = open_session(int8_path, threads)
            int8_vectors, int8_ms = _timed(lambda: embed(int8))
            int8_cosine = min_cosine(int8_vectors, fp32_vectors)
        except (OSError, ModelError) as exc:
            log.warning("keeping fp32 for %s: int8 quantisation failed: %s", stem, exc)
        else:
            # int8 only where it is both close enough and faster: dynamic quantisation of
            # small convolutions was slower than fp32 (benchmarks/lit_image_tower.py).
            if int8_cosine >= INT8_MIN_COSINE and int8_ms < fp32_ms:
                chosen, session, chosen_ms = "int8", int8, int8_ms
    if chosen == "fp32":
        int8_path.unlink(missing_ok=True)
    path = int8_path if chosen == "int8" else fp32_path
    record = {
        "format_version": FORMAT_VERSION,
        "precision": chosen,
        "file": path.name,
        "sha256": _sha256(path),
        "fp32_vs_native_min_cosine": round(fp32_cosine, 6),
        "int8_vs_fp32_min_cosine": None if int8_cosine is None else round(int8_cosine, 6),
        "int8_min_cosine_required": INT8_MIN_COSINE,
        "sample_size": len(fp32_vectors),
        # Best of three passes over the sample, each runtime on this machine at export.
        "sample_ms": {
            "native": round(native_ms, 2),
            "fp32": round(fp32_ms, 2),
            "int8": None if int8_ms is None else round(int8_ms, 2),
        },
        "faster_than_native": chosen_ms < native_ms,
        "onnxruntime": _ort_version(),
        "export_seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(folder / f"{stem}.json", record)
    log.info("exported %s to ONNX: %s", stem, {k: record[k] for k in ("precision", "file")})
    return CachedModel(session, path, chosen, record, exported=True)


def _timed(run: Callable[[], np.ndarray], repeats: int = 3) -> tuple[np.ndarray, float]:
    """`run()`'s result and its best time in ms over `repeats` runs after a warm-up."""
    result = run()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - began) * 1000)
    return result, best


def quantize_int8(source: Path, target: Path, *, per_channel: bool = True) -> None:
    """Dynamic int8 quantisation of the weights (activations stay float). Per channel by
    default: per tensor lost more (MiniLM: min cosine to fp32 0.89 vs 0.97 on the sample)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it warns about optional pre-processing on the root logger
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel
        )
    except Exception as exc:  # onnx/onnxruntime raise many types for graphs they reject
        raise ModelError(f"cannot quantise {source}: {exc}") from exc
    finally:
        root.setLevel(level)


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _writable(folder: Path) -> bool:
    target = folder / EXPORTS_FOLDER
    return os.access(target if target.is_dir() else folder, os.W_OK | os.X_OK)


def _installed_package(folder: Path) -> bool:
    # A wheel's files belong to pip: files added there outlive an uninstall.
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    resolved = folder.resolve()
    return any(part in ("site-packages", "dist-packages") for part in resolved.parts) or any(
        resolved.is_relative_to(Path(root).resolve()) for root in roots
    )


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
