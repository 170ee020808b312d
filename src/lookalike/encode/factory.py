"""Encoder registry: the one place that maps a model source kind to an implementation."""

from __future__ import annotations

from collections.abc import Callable

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.sources import ModelSource, parse_model_source
from lookalike.errors import ConfigError

EncoderBuilder = Callable[[ModelSource, Settings], Encoder]
_BUILDERS: dict[str, EncoderBuilder] = {}


def register_encoder(*kinds: str) -> Callable[[EncoderBuilder], EncoderBuilder]:
    def decorate(builder: EncoderBuilder) -> EncoderBuilder:
        for kind in kinds:
            _BUILDERS[kind] = builder
        return builder

    return decorate


def model_source(settings: Settings) -> ModelSource:
    return parse_model_source(
        settings.model_name, settings.model_pretrained, settings.model_checkpoint
    )


def create_encoder(settings: Settings) -> Encoder:
    """Build (not load: loading happens on first use) the encoder the settings name."""
    _register_builtins()
    source = model_source(settings)
    builder = _BUILDERS.get(source.kind)
    if builder is None:
        raise ConfigError(
            f"no encoder for model source kind {source.kind!r}; known: {sorted(_BUILDERS)}"
        )
    return builder(source, settings)


def _register_builtins() -> None:
    # Imported here so that `import lookalike` stays light and optional extras stay optional.
    from lookalike.encode import builtins  # noqa: F401
