"""Caches: the in-process LRU and Redis backends behave alike (congruence), the embedding
and result caches spare the work they should, and a catalog change invalidates results."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from lookalike import Engine, Settings
from lookalike.cache import open_cache, open_cache_backend
from lookalike.cache.embeddings import EmbeddingCache, image_key, text_key
from lookalike.cache.lru import LRUCache
from lookalike.cache.redis import RedisCache, connect_redis
from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.ingest import ItemSpec
from lookalike.text import normalise_text
from tests.support.images import pattern_image


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _memory_url(request: pytest.FixtureRequest) -> str:
    return "memory://"


def _redis_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("redis_url")


# Every registered cache backend by the URL that selects it; a new backend joins with a line.
BACKENDS = {"memory": _memory_url, "redis": _redis_url}


def test_every_registered_backend_is_in_the_suite(tmp_path: Path) -> None:
    from lookalike.cache.factory import _BUILDERS

    settings = Settings(_env_file=None, data_dir=tmp_path)
    # Redis clients connect lazily: building one for a closed port sends nothing.
    built = [_BUILDERS[scheme](f"{scheme}://127.0.0.1:9/0", settings) for scheme in _BUILDERS]
    assert {backend.describe()["type"] for backend in built} == set(BACKENDS)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path: Path):
    """The same cache contract on every backend, chosen by configuration alone."""
    url = BACKENDS[request.param](request)
    caches = open_cache_backend(Settings(_env_file=None, data_dir=tmp_path, cache_url=url))
    assert caches.describe()["type"] == request.param
    assert caches.capabilities.shared_between_processes == (request.param != "memory")
    yield caches.cache("test")
    caches.close()


def test_backends_store_return_and_count_alike(backend) -> None:
    assert backend.get_many(["a", "b"]) == [None, None]
    backend.set("a", b"\x00\x01binary", ttl_s=60)
    backend.set("b", b"", ttl_s=60)
    assert backend.get_many(["a", "b", "c"]) == [b"\x00\x01binary", b"", None]
    backend.set("a", b"replaced", ttl_s=60)
    assert backend.get_many(["a"]) == [b"replaced"]
    stats = backend.stats()
    assert (stats.hits, stats.misses, stats.errors) == (3, 3, 0)


def test_redis_entries_expire(redis_url: str, tmp_path: Path) -> None:
    import time

    cache = open_cache(Settings(_env_file=None, data_dir=tmp_path, redis_url=redis_url), "t")
    cache.set("short", b"x", ttl_s=0.05)
    cache.set("long", b"y", ttl_s=60)
    deadline = time.monotonic() + 5
    while cache.get_many(["short"])[0] is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get_many(["short", "long"]) == [None, b"y"]


def test_lru_expires_entries_and_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache = LRUCache("t", max_bytes=3 * (1 + 100 + 120), clock=clock)  # three 100-byte entries
    for key in "abc":
        cache.set(key, bytes(100), ttl_s=10)
    cache.get_many(["a"])  # a is now the most recently used
    cache.set("d", bytes(100), ttl_s=10)
    assert [v is not None for v in cache.get_many(["a", "b", "c", "d"])] == [
        True,
        False,
        True,
        True,
    ]
    assert cache.size_bytes <= cache.max_bytes
    clock.now += 10
    assert cache.get_many(["a", "c", "d"]) == [None, None, None]
    assert len(cache) == 0
    cache.set("huge", bytes(10_000), ttl_s=10)  # larger than the whole cache: not kept
    assert cache.get_many(["huge"]) == [None]


def test_unreachable_redis_answers_misses_and_counts_errors() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = RedisCache("t", connect_redis(f"redis://127.0.0.1:{port}/0"), prefix="t:")
    cache.set("a", b"x", ttl_s=10)
    assert cache.get_many(["a", "b"]) == [None, None]
    stats = cache.stats()
    assert stats.errors == 1  # the set failed; the get was not even tried (paused)
    assert stats.misses == 2 and stats.hits == 0


def test_embedding_cache_encodes_only_what_it_has_not_seen() -> None:
    calls: list[list[int]] = []
    rng = np.random.default_rng(0)
    vectors = {key: rng.standard_normal(4).astype(np.float32) for key in "abc"}

    def encode(keys):
        def run(positions: list[int]) -> np.ndarray:
            calls.append(positions)
            return np.stack([vectors[keys[i]] for i in positions])

        return run

    cache = EmbeddingCache(LRUCache("e", 1 << 20), ttl_s=60)
    first = cache.get_or_encode(["a", "b"], 4, encode(["a", "b"]))
    second = cache.get_or_encode(["b", "c", "a"], 4, encode(["b", "c", "a"]))
    assert calls == [[0, 1], [1]]  # only c was new the second time
    np.testing.assert_array_equal(first, np.stack([vectors["a"], vectors["b"]]))
    np.testing.assert_array_equal(second, np.stack([vectors[k] for k in "bca"]))


def test_cache_keys_separate_models_texts_and_images() -> None:
    assert normalise_text("  red\n\tcar  ") == "red car"
    assert text_key("m1", "red car") != text_key("m2", "red car")
    assert text_key("m1", "red car") != text_key("m1", "red cars")
    image = pattern_image(1)
    assert image_key("m1", image) == image_key("m1", pattern_image(1))
    assert image_key("m1", image) != image_key("m1", pattern_image(2))
    assert image_key("m1", b"abc") != image_key("m1", b"abd")


def test_catalog_version_moves_with_every_product_write(tmp_path: Path) -> None:
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    v0 = catalog.version()
    catalog.upsert([ProductWrite(Product("a", price=1.0), np.ones(4, dtype=np.float32))])
    v1 = catalog.version()
    head = catalog.log_head()
    catalog.upsert([ProductWrite(Product("a", price=2.0))])  # metadata only
    v2 = catalog.version()
    # No vector was added or removed (the log has a metadata entry only); the version moved.
    changes = catalog.changes_since(head)
    assert len(changes.add_ids) == len(changes.remove_ids) == 0
    catalog.set_meta("note", "x")
    catalog.delete(["missing"])
    assert catalog.version() == v2  # neither changed a product
    catalog.delete(["a"])
    assert v0 < v1 < v2 < catalog.version()
    catalog.close()


@pytest.fixture(params=["lru", "redis"])
def cached_engine(request, tmp_path: Path, tiny_model_dir: Path, photo_folder: Path):
    overrides = {}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        model_checkpoint=str(tiny_model_dir),
        device="cpu",
        encode_batch_size=8,
        ingest_workers=2,
        **overrides,
    )
    with Engine(settings) as engine:
        engine.index_path(photo_folder)
        yield engine


def _stats(engine: Engine) -> dict[str, tuple[int, int]]:
    caches = (engine.caches.embeddings.cache, engine.caches.results.cache)
    return {c.name: (c.stats().hits, c.stats().misses) for c in caches}


def test_repeated_query_is_answered_from_the_caches(cached_engine: Engine, photo_folder) -> None:
    engine = cached_engine
    query = (photo_folder / "cat0" / "item_0004.png").read_bytes()
    first = engine.search_image(query, limit=5)
    assert _stats(engine) == {"embeddings": (0, 1), "results": (0, 1)}
    again = engine.search_image(query, limit=5)
    assert _stats(engine) == {"embeddings": (1, 1), "results": (1, 1)}
    assert [h.product for h in again.hits] == [h.product for h in first.hits]
    assert [h.score for h in again.hits] == [h.score for h in first.hits]
    assert again.total_found == first.total_found and "result_cache_ms" in again.timings_ms
    engine.search_image(query, limit=6)  # another limit: new results, same embedding
    assert _stats(engine) == {"embeddings": (2, 1), "results": (1, 2)}
    engine.search_text("  a   photo ")
    engine.search_text("a photo")  # the same text once normalised
    assert _stats(engine)["embeddings"] == (3, 2)


def test_catalog_changes_invalidate_cached_results(cached_engine: Engine, photo_folder) -> None:
    engine = cached_engine
    path = photo_folder / "cat1" / "item_0007.png"
    top = engine.search_image(path.read_bytes(), limit=3).hits[0].product
    assert top.id == "cat1/item_0007.png" and top.price is None

    # A metadata-only change (the vector log does not move) shows at once.
    engine.upsert(ItemSpec(top.id, str(path), title="Renamed", price=12.5))
    hit = engine.search_image(path.read_bytes(), limit=3).hits[0].product
    assert (hit.id, hit.title, hit.price) == (top.id, "Renamed", 12.5)

    # A delete too.
    engine.delete(top.id)
    after = engine.search_image(path.read_bytes(), limit=3)
    assert top.id not in [h.product.id for h in after.hits]
    hits, misses = _stats(engine)["results"]
    assert hits == 0 and misses == 3  # each search after a change computed afresh


def test_lru_lets_go_of_expired_entries_without_being_asked_for_them() -> None:
    """A cache under its size bound still frees what expired (the result cache's 30 s)."""
    clock = Clock()
    cache = LRUCache("t", max_bytes=1_000_000, clock=clock)
    for key in "abcde":
        cache.set(key, bytes(100), ttl_s=30)
        clock.now += 1
    clock.now += 27  # a..c expired (set at 0, 1, 2); d and e not
    cache.set("f", bytes(100), ttl_s=30)
    assert len(cache) == 3
    assert cache.size_bytes == 3 * (1 + 100 + 120)
    assert [v is not None for v in cache.get_many(["d", "e", "f"])] == [True, True, True]
