"""Shard files and the batch run state: complete and checked, or ignored; resumable."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow", reason="shards need pyarrow: pip install 'lookalike[ray]'")

from lookalike.catalog.base import Product
from lookalike.errors import StoreLocked
from lookalike.ingest.prepare import Prepared
from lookalike.ingest.shards import (
    RunState,
    ShardInfo,
    ShardItem,
    item_from_json,
    item_to_json,
    plan_digest,
    read_shard,
    write_shard,
)
from lookalike.ingest.sources import BadRow, ItemSpec

DIM = 4


def sample_items() -> list[ShardItem]:
    encoded = Product(
        "a", title="A", price=9.5, attributes={"color": "red", "size": 42}, content_hash="h1"
    )
    return [
        ShardItem(2, Prepared("failed", failure=BadRow("c", "/img/c.png", "too small"))),
        ShardItem(0, Prepared("encode", encoded), np.arange(DIM, dtype=np.float32)),
        ShardItem(1, Prepared("unchanged", Product("b", content_hash="h2"))),
    ]


def info(rows: int = 3, digest: str = "d") -> ShardInfo:
    return ShardInfo(shard=4, digest=digest, rows=rows, model_id="m", dim=DIM)


def test_shard_round_trip(tmp_path):
    path = tmp_path / "shard-000004.parquet"
    write_shard(path, info(), sample_items())
    items = read_shard(path, info())
    assert [i.pos for i in items] == [0, 1, 2]
    assert [i.prepared.action for i in items] == ["encode", "unchanged", "failed"]
    assert items[0].prepared.product == sample_items()[1].prepared.product
    np.testing.assert_array_equal(items[0].embedding, np.arange(DIM, dtype=np.float32))
    assert items[1].embedding is None and items[2].embedding is None
    assert items[2].prepared.failure == BadRow("c", "/img/c.png", "too small")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_a_shard_that_does_not_match_its_plan_is_ignored(tmp_path):
    path = tmp_path / "shard-000004.parquet"
    assert read_shard(path, info()) is None  # missing
    write_shard(path, info(), sample_items())
    assert read_shard(path, info(digest="other items")) is None
    assert read_shard(path, ShardInfo(4, "d", 3, "another-model", DIM)) is None
    path.write_bytes(path.read_bytes()[:100])  # torn by something other than us
    assert read_shard(path, info()) is None


def test_plan_digest_and_item_json():
    items = [ItemSpec("a", "/a.png", price=3.0, attributes={"k": 1}), BadRow("x", "m:2", "bad")]
    assert [item_from_json(item_to_json(i)) for i in items] == items
    assert plan_digest(items) == plan_digest(list(items))
    assert plan_digest(items) != plan_digest([ItemSpec("a", "/b.png"), items[1]])


def test_run_state_resumes_only_the_same_unfinished_run(tmp_path):
    key = {"source": "/catalog.jsonl", "model_id": "m", "shard_size": 3}
    state = RunState(tmp_path / "batch")
    assert not state.begin(key)
    write_shard(state.shard_path(4), info(), sample_items())
    state.mark_loaded(info())
    assert state.loaded(info()) and not state.loaded(info(digest="other"))
    state.close()

    again = RunState(tmp_path / "batch")
    assert again.begin(key)  # the run was not finished: resume it
    assert again.loaded(info())
    with pytest.raises(StoreLocked):
        RunState(tmp_path / "batch").begin(key)  # one run at a time
    again.finish()
    assert not list((tmp_path / "batch").glob("shard-*"))
    again.close()

    fresh = RunState(tmp_path / "batch")
    assert not fresh.begin(key)  # a finished run is not resumed
    fresh.close()
    other = RunState(tmp_path / "batch")
    write_shard(other.shard_path(4), info(), sample_items())
    assert not other.begin({**key, "model_id": "new"})
    assert not other.shard_path(4).exists()  # another run's shards are cleared
    other.close()
