"""Dynamic batching of query encodings (`encode/batching.py`) over a real tiny CLIP:
concurrent callers share one encoder call and each gets exactly its own rows; a bad input
fails only its own caller; a call that fills a batch alone does not wait."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.batching import BatchingEncoder, take_batch_wait_ms
from tests.support.images import pattern_images

TEXTS = [f"a {colour} {thing}" for colour in ("red", "blue") for thing in ("cat", "car", "cup")]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> object:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        model_checkpoint=str(tiny_model_dir),
        device="cpu",
    )
    return create_encoder(settings)


def together(calls: list, workers: int) -> list:
    """Run the calls on `workers` threads released at the same instant."""
    start = threading.Barrier(workers)

    def run(call):
        start.wait()
        try:
            return call()
        except Exception as exc:  # the test looks at which caller failed
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, calls))


def test_concurrent_texts_share_one_call_and_get_their_own_rows(encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=16, max_wait_s=1.0)
    alone = [encoder.encode_texts([text]) for text in TEXTS]
    results = together([lambda t=text: batching.encode_texts([t]) for text in TEXTS], len(TEXTS))
    assert batching.texts.calls == 1 and batching.texts.batched_items == len(TEXTS)
    for got, expected in zip(results, alone, strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_bad_input_fails_only_its_own_caller(encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=16, max_wait_s=1.0)
    inputs = [[TEXTS[0]], [None], [TEXTS[1], TEXTS[2]]]  # None: the tokenizer refuses it
    results = together([lambda i=i: batching.encode_texts(i) for i in inputs], len(inputs))
    assert isinstance(results[1], Exception)
    np.testing.assert_allclose(results[0], encoder.encode_texts([TEXTS[0]]), atol=1e-5)
    np.testing.assert_allclose(results[2], encoder.encode_texts(TEXTS[1:3]), atol=1e-5)


def test_images_batch_and_a_full_batch_runs_at_once(encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=4, max_wait_s=5.0)
    images = pattern_images(4)
    take_batch_wait_ms()
    rows = batching.encode_images(images)  # fills a batch alone: no wait for company
    assert take_batch_wait_ms() < 1000  # not the 5 s a lone partial batch would wait
    np.testing.assert_allclose(rows, encoder.encode_images(images), atol=1e-5)
    pairs = together([lambda i=i: batching.encode_images(images[i : i + 2]) for i in (0, 2)], 2)
    assert batching.images.calls == 2  # the full batch, then the two pairs together
    np.testing.assert_allclose(np.vstack(pairs), encoder.encode_images(images), atol=1e-5)
