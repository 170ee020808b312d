"""Text-tower registry: one loader for packaged names, local folders and hub names.

Shaped like `encode/factory.py`: a tower kind registers a builder (and, to be picked for
local folders, a test that claims a folder); `load_text_tower` resolves a name through
`parse_text_source`, builds the tower once per process and options, and returns it.

    @register_text_tower("onnx", claims=is_onnx_folder, priority=20)
    def _onnx(source: TextSource, options: TextTowerOptions) -> TextTower: ...

    register_packaged_text_model("intfloat/multilingual-e5-small", locate=locate_e5)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lookalike.encode.text.base import TextSource, TextTower, TextTowerOptions
from lookalike.errors import ConfigError, ModelError

TextTowerBuilder = Callable[[TextSource, TextTowerOptions], TextTower]
FolderTest = Callable[[Path], bool]
Locator = Callable[[str], TextSource | None]

RUNTIMES = ("auto", "onnx", "native")
HUB = "hub"  # the kind of a name no registered kind or package knows: a hub repo id


@dataclass(frozen=True)
class _Kind:
    build: TextTowerBuilder
    claims: FolderTest | None
    priority: int


_KINDS: dict[str, _Kind] = {}
_PACKAGED: dict[str, Locator] = {}
_towers: dict[tuple[TextSource, TextTowerOptions], TextTower] = {}
_load_lock = threading.Lock()


def register_text_tower(
    kind: str, *, claims: FolderTest | None = None, priority: int = 0
) -> Callable[[TextTowerBuilder], TextTowerBuilder]:
    """Register a builder for `kind`. `claims(folder)` says whether a local folder is one
    this kind loads; of the kinds that claim a folder, the highest `priority` wins."""

    def decorate(builder: TextTowerBuilder) -> TextTowerBuilder:
        _KINDS[kind] = _Kind(builder, claims, priority)
        return builder

    return decorate


def register_packaged_text_model(*names: str, locate: Locator) -> None:
    """Names whose weights a Python package ships: `locate(name)` says where (or None when
    the package is not installed, and the name falls through to the hub)."""
    for name in names:
        _PACKAGED[name] = locate


def text_tower_kinds() -> list[str]:
    _register_builtins()
    return sorted(_KINDS)


def parse_text_source(name: str) -> TextSource:
    """A text model name -> TextSource, without network.

    `kind:rest` with a registered kind forces that kind (`sentence-transformers:/models/x`);
    a packaged name goes where its package keeps it; a local folder goes to the kind that
    claims it; anything else is a hub repo id (an `hf-hub:` prefix is allowed).
    """
    _register_builtins()
    if not name or not name.strip():
        raise ConfigError("the text model name is empty")
    prefix, _, rest = name.partition(":")
    if rest and prefix in _KINDS:
        path = Path(rest).expanduser()
        if path.is_dir():
            return TextSource(prefix, str(path.resolve()), name)
        # A kind that loads folders reads anything else as a hub repo id.
        return TextSource(prefix, rest, name, from_hub=_KINDS[prefix].claims is not None)
    if name in _PACKAGED:
        located = _PACKAGED[name](name)
        if located is not None:
            return located
    path = Path(name).expanduser()
    if path.is_dir():
        return folder_source(path, name)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ConfigError(f"text model folder {name!r} does not exist")
    return TextSource(HUB, name.removeprefix("hf-hub:"), name)


def folder_source(path: Path, name: str) -> TextSource:
    """The source for a local folder: the highest-priority kind that claims it."""
    _register_builtins()
    claimed = [
        (kind.priority, key)
        for key, kind in _KINDS.items()
        if kind.claims is not None and kind.claims(path)
    ]
    if not claimed:
        raise ModelError(
            f"no text tower kind loads the folder {path}; known kinds: {sorted(_KINDS)}"
        )
    return TextSource(max(claimed)[1], str(path.resolve()), name)


def load_text_tower(
    name: str,
    *,
    device: str = "cpu",
    threads: int | None = None,
    cache_dir: str | None = None,
    runtime: str = "native",
    export_dir: str | None = None,
) -> TextTower:
    """Load (once per process and options) the text tower `name` names.

    `runtime` "auto" or "onnx" runs towers that have an ONNX Runtime form there (exported
    once into `export_dir` or beside the model); training keeps "native", the reference.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown encoder runtime {runtime!r}; known: {list(RUNTIMES)}")
    source = parse_text_source(name)
    options = TextTowerOptions(
        device=device, threads=threads, cache_dir=cache_dir, runtime=runtime, export_dir=export_dir
    )
    key = (source, options)
    with _load_lock:
        if key not in _towers:
            _towers[key] = _build(source, options)
        return _towers[key]


def _build(source: TextSource, options: TextTowerOptions) -> TextTower:
    if source.kind == HUB or source.from_hub:
        from lookalike.encode.text.download import download_text_model

        folder = download_text_model(source.location, options.cache_dir)
        if source.kind == HUB:
            source = folder_source(folder, source.name)
        else:
            source = TextSource(source.kind, str(folder), source.name)
    kind = _KINDS.get(source.kind)
    if kind is None:
        raise ConfigError(f"no text tower of kind {source.kind!r}; known: {sorted(_KINDS)}")
    return kind.build(source, options)


def _register_builtins() -> None:
    # Imported here so that importing the registry stays light (as in encode/factory.py).
    from lookalike.encode.text import builtins  # noqa: F401
