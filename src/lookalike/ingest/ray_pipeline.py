"""Batch indexing on Ray Data: the local ingest's per-item preparation and encoder, spread
over the workers of a Ray cluster (or a local Ray started in-process).

    driver   source -> shards of `ray_shard_size` items -> catalog look-ups (skip unchanged)
    Ray      prepare tasks: prepare_item (fetch, hash, decide, decode, preprocess)
             EncodeWorker actors: encode_pixels in batches, one model load each, a GPU each
             when the cluster has GPUs
    driver   rows grouped by shard -> shard file (Parquet, atomic) -> one catalog
             transaction per shard -> the index applies it -> shard marked loaded

A stopped run (Ctrl-C, a crash, a killed driver) resumes from its loaded shards: they are
counted, not redone. Bad items are reported and skipped exactly as in the local ingest.
The catalog and index are written only through their protocols, so whatever backend the
settings name receives the load.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, Product, ProductWrite
from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.factory import create_encoder
from lookalike.encode.images import ImageLimits
from lookalike.errors import BatchIndexError, ConfigError
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.index.live import LiveIndex
from lookalike.ingest.pipeline import IngestReport, _chunked, record_local_roots
from lookalike.ingest.prepare import Prepared, prepare_item, skip_action
from lookalike.ingest.shards import (
    RunState,
    ShardInfo,
    ShardItem,
    item_from_json,
    item_to_json,
    plan_digest,
    product_from_json,
    product_to_json,
    read_shard,
    write_shard,
)
from lookalike.ingest.sources import BadRow, ItemSpec

log = logging.getLogger(__name__)

# Columns every row carries from the prepare stage to the driver.
ROW_COLUMNS = ("shard", "pos", "id", "action", "existed", "product", "source", "reason")


@dataclass
class BatchReport(IngestReport):
    """An ingest report plus the shards of the run (`resumed_shards` were done earlier)."""

    shards: int = 0
    resumed_shards: int = 0
    # Share of time the encoder actors spent encoding, from each one's first batch to its
    # last: well below 1 means they waited for images (add readers: ray_read_concurrency).
    encoder_busy: float | None = None

    def summary(self) -> str:
        head, sep, tail = super().summary().partition(" - interrupted")
        note = f" [{self.shards} shards, {self.resumed_shards} done by an earlier attempt"
        if self.encoder_busy is not None:
            note += f", encoders busy {self.encoder_busy:.0%}"
        return head + note + "]" + sep + tail


def encoder_busy(spans: set[tuple[str, tuple[float, float]]]) -> float | None:
    """Mean over encoder actors of (time encoding) / (first batch start to last batch end).

    Spans of one actor come from one clock, so this holds on a cluster too."""
    by_actor: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for actor, span in spans:
        by_actor[actor].append(span)
    shares = []
    for actor_spans in by_actor.values():
        window = max(end for _, end in actor_spans) - min(start for start, _ in actor_spans)
        busy = sum(end - start for start, end in actor_spans)
        shares.append(busy / window if window > 0 else 1.0)
    return sum(shares) / len(shares) if shares else None


# --- Ray stages (run in Ray worker processes) ----------------------------------------------
@dataclass
class _PrepareTools:
    """What a prepare task needs; built once per Ray worker process (see `prepare_batch`)."""

    encoder: Encoder
    fetcher: Fetcher
    limits: ImageLimits
    threads: ThreadPoolExecutor
    hash_crops: bool = False

    @classmethod
    def build(cls, settings: Settings, local_roots: list[str]) -> _PrepareTools:
        encoder = create_encoder(settings)
        encoder.info  # noqa: B018 - load the model now, not inside the first item
        fetcher = Fetcher.from_settings(settings, local_roots=local_roots)
        threads = ThreadPoolExecutor(settings.ingest_workers, thread_name_prefix="prepare")
        limits = ImageLimits.from_settings(settings)
        return cls(encoder, fetcher, limits, threads, settings.duplicate_crops)

    def prepare(self, item: ItemSpec | BadRow, existing: Product | None) -> Prepared:
        if isinstance(item, BadRow):  # a manifest row that never became an item
            return Prepared("failed", failure=item)
        return prepare_item(
            item, existing, self.fetcher, self.limits, self.encoder, hash_crops=self.hash_crops
        )


# Ray reuses a task's worker process for the next tasks: the model for `preprocess` loads
# once per process, not once per batch.
_TOOLS: dict[str, _PrepareTools] = {}


def prepare_batch(
    batch: dict[str, np.ndarray], settings: Settings, local_roots: list[str]
) -> dict[str, np.ndarray]:
    """Ray task: `prepare_item` over a batch of planned items, in threads that hide
    download waits. Pixels travel as float32 bytes with their shape. Local image files are
    read only under `local_roots` (those of the folder or manifest being indexed)."""
    key = json.dumps([settings.model_dump_json(), local_roots])
    if key not in _TOOLS:
        _TOOLS[key] = _PrepareTools.build(settings, local_roots)
    tools = _TOOLS[key]
    items = [item_from_json(text) for text in batch["item"]]
    existing = [product_from_json(text) for text in batch["existing"]]
    prepared = list(tools.threads.map(tools.prepare, items, existing))
    shapes = np.zeros((len(prepared), 3), dtype=np.int64)
    pixels = np.empty(len(prepared), dtype=object)
    for row, p in enumerate(prepared):
        if p.pixels is not None:
            shapes[row] = p.pixels.shape
            pixels[row] = np.ascontiguousarray(p.pixels, dtype=np.float32).tobytes()
        else:
            pixels[row] = b""
    failures = [p.failure for p in prepared]
    return {
        "shard": batch["shard"],
        "pos": batch["pos"],
        "id": np.array([p.product.id if p.product else p.failure.id for p in prepared]),
        "action": np.array([p.action for p in prepared]),
        "existed": np.array([p.existed for p in prepared], dtype=bool),
        "product": np.array([product_to_json(p.product) for p in prepared], dtype=object),
        "source": np.array([f.source if f else "" for f in failures], dtype=object),
        "reason": np.array([f.reason if f else "" for f in failures], dtype=object),
        "pixels": pixels,
        "pixel_shape": shapes,
    }


class EncodeWorker:
    """Ray actor: one model load, then `encode_pixels` on the rows that need encoding."""

    def __init__(self, settings: Settings) -> None:
        self.encoder = create_encoder(settings)
        self.dim = self.encoder.info.dim  # load now, not on the first batch
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.time()
        todo = np.flatnonzero(batch["action"] == "encode")
        embedding = np.zeros((len(batch["action"]), self.dim), dtype=np.float32)
        if len(todo):
            pixels = np.stack(
                [
                    np.frombuffer(batch["pixels"][row], dtype=np.float32).reshape(
                        batch["pixel_shape"][row]
                    )
                    for row in todo
                ]
            )
            embedding[todo] = self.encoder.encode_pixels(pixels)
        rows = len(embedding)
        return {
            **{name: batch[name] for name in ROW_COLUMNS},
            "embedding": embedding,
            # When this actor worked, so the driver can tell how busy the encoders were.
            "encoder": np.array([self.name] * rows),
            "encode_span": np.tile([started, time.time()], (rows, 1)),
        }


# Prepare tasks reserve less CPU than they could use: they wait on reads and downloads much
# of the time, and unequal reservations keep Ray Data from fusing them into the encoder
# actors, which would decode and encode one after the other (ray-project/ray#54433).
READER_CPUS = 0.5


def build_dataset(
    ray: Any,
    settings: Settings,
    rows: list[dict[str, Any]],
    blocks: int,
    local_roots: Sequence[str] = (),
) -> Any:
    """The Ray Data pipeline over planned rows: prepare tasks, then encoder actors."""
    _quiet_ray_data(ray)
    batch = settings.encode_batch_size
    actors, encoder_resources = _encoder_resources(ray, settings)
    return (
        # Blocks are built here on the driver (no remote tasks to describe them).
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(
            prepare_batch,
            fn_kwargs={"settings": settings, "local_roots": list(local_roots)},
            compute=ray.data.TaskPoolStrategy(size=settings.ray_read_concurrency),
            batch_size=batch,
            num_cpus=READER_CPUS,
        )
        .map_batches(
            EncodeWorker,
            fn_constructor_args=(settings,),
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch,
            **encoder_resources,
        )
    )


def _encoder_resources(ray: Any, settings: Settings) -> tuple[int, dict[str, float]]:
    """A GPU per encoder actor when the cluster has GPUs (and the settings allow)."""
    actors = settings.ray_encoder_actors
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and settings.device != "cpu":
        if actors > gpus:
            log.warning("%d encoder actors asked, the cluster has %d GPUs", actors, gpus)
            actors = gpus
        return actors, {"num_gpus": 1}
    return actors, {"num_cpus": float(settings.torch_threads or 1)}


# --- Ray connection ------------------------------------------------------------------------
class RaySession:
    """Connects to the configured cluster, or starts a local Ray; reuses a running one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._owned = False
        self._started = False

    def start(self) -> Any:
        """The `ray` module, connected."""
        try:
            import ray
            import ray.data  # the Data library is its own part of the extra
        except ImportError as exc:
            raise ConfigError(
                "the Ray engine needs the ray extra: pip install 'lookalike[ray]'"
            ) from exc
        if self._started or ray.is_initialized():
            self._started = True
            return ray
        settings = self.settings
        options: dict[str, Any] = {"logging_level": logging.WARNING}
        try:
            if settings.ray_address:
                check_reachable(settings.ray_address)
                ray.init(address=settings.ray_address, **options)
            else:
                # Logical CPUs: enough for every actor; the OS shares the real cores.
                needed = settings.ray_read_concurrency + settings.ray_encoder_actors * (
                    settings.torch_threads or 1
                )
                ray.init(
                    address="local",
                    num_cpus=max(os.cpu_count() or 1, needed),
                    include_dashboard=False,
                    **options,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = settings.ray_address or "a local Ray"
            raise BatchIndexError(f"cannot start or reach {where}: {exc}") from exc
        self._owned = self._started = True
        return ray

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
        self._owned = self._started = False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at a `host:port` or `ray://host:port` address: Ray
    itself retries an unreachable cluster for minutes before it gives up."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # `auto`, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BatchIndexError(f"cannot reach a Ray cluster at {address}: {exc}") from exc


# --- the driver ----------------------------------------------------------------------------
class RayIngest:
    """Runs a batch index on Ray and loads its shards into the catalog and the index."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        index: LiveIndex,
        *,
        model_id: str,
        dim: int,
        progress: bool = False,
        on_shard_loaded: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.index = index
        self.model_id = model_id
        self.dim = dim
        self.progress = progress
        self.on_shard_loaded = on_shard_loaded
        self.state = RunState(settings.data_dir / "batch")
        self._ray = RaySession(settings)
        self._spans: set[tuple[str, tuple[float, float]]] = set()
        self._local_roots: list[str] = []

    def run(
        self, items: Iterable[ItemSpec | BadRow], total: int | None = None, *, source: str
    ) -> BatchReport:
        """Index `items` (from `source`: the folder or manifest, which names the run for
        resuming and is where local image files may be read from)."""
        self._local_roots = [str(root) for root in ingest_roots(source, self.settings)]
        record_local_roots(self.catalog, self._local_roots)
        report = BatchReport()
        started = time.monotonic()
        self._bar = tqdm(
            total=total, desc="ingest (ray)", unit="img", disable=not self.progress, smoothing=0.05
        )
        key = {
            "source": source,
            "model_id": self.model_id,
            "shard_size": self.settings.ray_shard_size,
        }
        try:
            resuming = self.state.begin(key)
            pending: list[tuple[ShardInfo, list[ItemSpec | BadRow]]] = []
            for shard, planned in enumerate(_chunked(items, self.settings.ray_shard_size)):
                report.shards += 1
                info = ShardInfo(shard, plan_digest(planned), len(planned), self.model_id, self.dim)
                if resuming and self._resume(info, report):
                    continue
                pending.append((info, planned))
                if len(pending) >= self.settings.ray_shards_per_pass:
                    self._run_pass(pending, report)
                    pending = []
            if pending:
                self._run_pass(pending, report)
            self.state.finish()
            report.encoder_busy = encoder_busy(self._spans)
        except KeyboardInterrupt:
            report.interrupted = True
            raise
        finally:
            self._bar.close()
            self._ray.close()
            self.state.close()
            self.index.save(force=True)
            report.elapsed_s = time.monotonic() - started
        return report

    def _resume(self, info: ShardInfo, report: BatchReport) -> bool:
        """Count a shard an earlier attempt loaded, or load one it wrote; False: redo it."""
        items = read_shard(self.state.shard_path(info.shard), info)
        if items is None:
            return False
        self._bar.update(len(items))
        if self.state.loaded(info):
            for item in items:
                report.record(item.prepared)
            report.resumed_shards += 1
        else:
            self._load(info, items, report)
        return True

    def _run_pass(
        self, pending: list[tuple[ShardInfo, list[ItemSpec | BadRow]]], report: BatchReport
    ) -> None:
        """Prepare and encode these shards on Ray; load each as soon as all its rows are back."""
        ray = self._ray.start()
        infos = {info.shard: info for info, _ in pending}
        rows = self._plan_rows(pending)
        dataset = build_dataset(ray, self.settings, rows, len(pending), self._local_roots)
        collected: dict[int, list[ShardItem]] = defaultdict(list)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for actor, (start, end) in zip(
                    batch["encoder"], batch["encode_span"].tolist(), strict=True
                ):
                    self._spans.add((str(actor), (start, end)))
                for shard, item in _rows(batch):
                    collected[shard].append(item)
                    self._bar.update(1)
                    if len(collected[shard]) == infos[shard].rows:
                        self._finish_shard(infos[shard], collected.pop(shard), report)
        except ray.exceptions.RayError as exc:
            raise BatchIndexError(
                f"the Ray job failed: {exc}\nloaded shards are kept; run again to resume"
            ) from exc
        if collected:
            raise BatchIndexError(
                f"Ray returned shards {sorted(collected)} incomplete; run again to resume"
            )

    def _plan_rows(
        self, pending: list[tuple[ShardInfo, list[ItemSpec | BadRow]]]
    ) -> list[dict[str, Any]]:
        """One row per item, with its current catalog record for the skip-unchanged test."""
        rows = []
        for info, planned in pending:
            existing = self.catalog.get_many([i.id for i in planned if isinstance(i, ItemSpec)])
            for pos, item in enumerate(planned):
                stored = existing.get(item.id) if isinstance(item, ItemSpec) else None
                rows.append(
                    {
                        "shard": info.shard,
                        "pos": pos,
                        "item": item_to_json(item),
                        "existing": product_to_json(stored),
                    }
                )
        return rows

    def _finish_shard(self, info: ShardInfo, items: list[ShardItem], report: BatchReport) -> None:
        path = self.state.shard_path(info.shard)
        write_shard(path, info, items)
        # Loaded from the file just written: one load path for fresh and resumed shards.
        stored = read_shard(path, info)
        if stored is None:
            raise BatchIndexError(f"shard file {path} did not read back")
        self._load(info, stored, report)

    def _load(self, info: ShardInfo, items: list[ShardItem], report: BatchReport) -> None:
        """One catalog transaction for the shard, then its writes reach the index (a local
        index catches up from the log; a shared one, Milvus, is written here)."""
        for item in items:
            report.record(item.prepared)
        self.catalog.upsert(self._writes(items))
        self.index.apply_writes()
        self.state.mark_loaded(info)
        self._bar.set_postfix(shards=info.shard + 1, refresh=False)
        if self.on_shard_loaded is not None:
            self.on_shard_loaded(info.shard)

    def _writes(self, items: list[ShardItem]) -> list[ProductWrite]:
        """Catalog writes; an embedding already stored (a load that committed just before a
        crash) is not written again, so reloading a shard never duplicates vectors."""
        encoded = [i.prepared.product for i in items if i.prepared.action == "encode"]
        stored = self.catalog.get_many([p.id for p in encoded if p is not None])
        writes = []
        for item in items:
            product = item.prepared.product
            if item.prepared.action == "metadata":
                writes.append(ProductWrite(product))
            elif item.prepared.action == "encode":
                skip = skip_action(stored.get(product.id), product)
                if skip is None:
                    writes.append(ProductWrite(product, item.embedding))
                elif skip == "metadata":
                    writes.append(ProductWrite(product))
        return writes


def _quiet_ray_data(ray: Any) -> None:
    """Our progress bar counts items with rate and ETA: Ray Data's own bars and INFO lines
    on the console would only garble it (its log file under /tmp/ray keeps everything)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Ray's memory detector would repeat every 30 s, for the whole run, that readers use
    # more memory than they reserve (each holds a model copy for `preprocess`); the sizing
    # in docs/scaling-batch.md covers it.
    detectors = getattr(context, "issue_detectors_config", None)
    high_memory = getattr(detectors, "high_memory_detector_config", None)
    if high_memory is not None:
        high_memory.detection_time_interval_s = -1
    for handler in logging.getLogger("ray.data").handlers:
        # The console handler streams; the session log file is another kind of handler.
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(max(handler.level, logging.WARNING))


def _rows(batch: dict[str, np.ndarray]) -> Iterator[tuple[int, ShardItem]]:
    """(shard, item) for each row of an encoded batch."""
    for row in range(len(batch["shard"])):
        action = str(batch["action"][row])
        failure = None
        if action == "failed":
            failure = BadRow(
                str(batch["id"][row]), str(batch["source"][row]), str(batch["reason"][row])
            )
        prepared = Prepared(
            action,  # type: ignore[arg-type]
            product_from_json(str(batch["product"][row])),
            failure=failure,
            existed=bool(batch["existed"][row]),
        )
        embedding = batch["embedding"][row] if action == "encode" else None
        yield int(batch["shard"][row]), ShardItem(int(batch["pos"][row]), prepared, embedding)
