"""The learned ranker (a LightGBM lambdarank model over `FEATURES`), where its models come
from, and the fallback to the hand-weighted ranker.

Models come from the catalog (`LOOKALIKE_RANKER=learned`: the newest promoted one, so
every worker and replica sharing the catalog serves the same model) or from a model
directory (`LOOKALIKE_RANKER=/path/to/model`). Either is checked again every
`ranker_reload_interval_s`: a promotion, a rollback or a new directory content is served
without a restart.

Whenever the model cannot be used (none promoted, missing, corrupt, needing features this
version does not compute, or failing on a query) the hand-weighted ranker orders the
results instead and the results say why (`SearchResults.fallback`; the API counts it in a
metric). A search never fails for the ranker's sake.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.catalog.base import Catalog
from lookalike.errors import LookalikeError, RankerModelError
from lookalike.search.ranking.base import Ranker, Ranking
from lookalike.search.ranking.features import FEATURES, SignalScales, ranking_features
from lookalike.search.ranking.hand_weighted import HandWeightedRanker
from lookalike.search.ranking.model_files import LearnedModel, load_model, read_model_dir
from lookalike.search.request import QueryContext
from lookalike.search.results import SearchHit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedRanker:
    """Scores the pool with a learned model; the hand-weighted ranker steps in per query
    if the model fails on it."""

    model: LearnedModel
    scales: SignalScales
    fallback_ranker: HandWeightedRanker
    name: str = field(default="learned", init=False)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def reorders(self) -> bool:
        return True

    def rank(self, context: QueryContext, hits: Sequence[SearchHit], now: float) -> Ranking:
        features = ranking_features(context, hits, self.scales, now)
        try:
            scores = self.model.predict(features)
            if scores.shape != (len(hits),) or not np.isfinite(scores).all():
                raise RankerModelError("the model gave no finite score for every candidate")
        except Exception as exc:  # whatever LightGBM raised: this query falls back
            log.warning("learned ranker %s failed on a query: %s", self.version, exc)
            scores = self.fallback_ranker.score(features)
            return Ranking(scores, features, FEATURES, fallback=f"learned: {exc}")
        return Ranking(scores, features, FEATURES)


@dataclass(frozen=True)
class FellBack:
    """The hand-weighted ranker standing in for a ranker whose model cannot be used."""

    ranker: HandWeightedRanker
    fallback: str  # why, for the response and the log

    @property
    def name(self) -> str:
        return self.ranker.name

    @property
    def version(self) -> str:
        return self.ranker.version

    @property
    def reorders(self) -> bool:
        return self.ranker.reorders

    def rank(self, context: QueryContext, hits: Sequence[SearchHit], now: float) -> Ranking:
        return self.ranker.rank(context, hits, now)


def fallback_of(ranker: Ranker) -> str | None:
    """Why `ranker` stands in for another, or None."""
    reason = getattr(ranker, "fallback", None)
    return reason if isinstance(reason, str) else None


class _Reloading:
    """A model checked again at most every `interval_s`; between checks the last answer
    (a model, or the error that kept one from loading) is reused."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._checked = -math.inf
        self._key: object = object()  # what the last load read (version, file stamps)
        self._state: tuple[LearnedModel | None, RankerModelError | None] = (
            None,
            RankerModelError("no learned ranker model loaded yet"),
        )

    def current(self) -> LearnedModel:
        """The model to serve now, or RankerModelError saying why there is none."""
        if self.clock() - self._checked >= self.interval_s:
            with self._lock:
                if self.clock() - self._checked >= self.interval_s:
                    self._refresh()
                    self._checked = self.clock()
        model, error = self._state
        if model is None:
            raise error or RankerModelError("no learned ranker model")
        return model

    def _refresh(self) -> None:
        try:
            key = self._stamp()
        except LookalikeError as exc:  # cannot even look: keep serving what we have
            log.warning("cannot check for a new ranker model: %s", exc)
            return
        if key == self._key:
            return
        try:
            self._state = (self._load(key), None)
        except LookalikeError as exc:
            error = exc if isinstance(exc, RankerModelError) else RankerModelError(str(exc))
            self._state = (None, error)
            log.warning("learned ranker unavailable: %s", error)
        self._key = key

    def _stamp(self) -> object:
        raise NotImplementedError

    def _load(self, key: object) -> LearnedModel:
        raise NotImplementedError


class PromotedModel(_Reloading):
    """The catalog's promoted model (`lookalike train-ranker`, `lookalike ranker ...`)."""

    def __init__(self, catalog: Catalog, interval_s: float, **kwargs) -> None:
        super().__init__(interval_s, **kwargs)
        self.catalog = catalog

    def _stamp(self) -> object:
        return self.catalog.promoted_ranker()

    def _load(self, key: object) -> LearnedModel:
        if key is None:
            raise RankerModelError("no learned ranker model is promoted (lookalike train-ranker)")
        stored = self.catalog.ranker(str(key))
        return load_model(stored.manifest, stored.model)


class DirectoryModel(_Reloading):
    """A model directory on a (shared) path, reloaded when its files change."""

    def __init__(self, path: Path, interval_s: float, **kwargs) -> None:
        super().__init__(interval_s, **kwargs)
        self.path = path

    def _stamp(self) -> object:
        stamps = []
        for name in ("manifest.json", "model.txt"):
            try:
                stat = (self.path / name).stat()
            except OSError:
                stamps.append(None)
                continue
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def _load(self, key: object) -> LearnedModel:
        return load_model(*read_model_dir(self.path))


class LearnedModels:
    """Where a pipeline's learned rankers get their models: the catalog's promoted model
    and model directories, each loaded once and reloaded when it changes."""

    def __init__(self, catalog: Catalog | None, interval_s: float = 5.0) -> None:
        self.catalog = catalog
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._promoted: PromotedModel | None = None
        self._directories: dict[Path, DirectoryModel] = {}

    def promoted(self) -> LearnedModel:
        if self.catalog is None:
            raise RankerModelError("no catalog to load a promoted ranker model from")
        with self._lock:
            if self._promoted is None:
                self._promoted = PromotedModel(self.catalog, self.interval_s)
            source = self._promoted
        return source.current()

    def directory(self, path: Path) -> LearnedModel:
        folder = path.parent if path.name == "manifest.json" else path
        with self._lock:
            source = self._directories.get(folder)
            if source is None:
                source = self._directories[folder] = DirectoryModel(folder, self.interval_s)
        return source.current()
