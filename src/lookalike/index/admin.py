"""Index administration: what a rebuild would make, rebuilding from stored embeddings, and
tuning search knobs to a recall target. Used by `lookalike build-index` / `tune`."""

from __future__ import annotations

from typing import Any

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.index.faiss_index import FaissIndex
from lookalike.index.live import LiveIndex
from lookalike.index.planner import IndexPlan, index_planner
from lookalike.index.tune import TuneReport, tune_index


class IndexAdmin:
    """Plans, builds and tunes the FAISS index of one catalog and model."""

    def __init__(
        self, settings: Settings, catalog: Catalog, dim: int, model_id: str, *, progress: bool
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.progress = progress
        self.planner = index_planner(settings, catalog, dim, model_id)

    def plan(self) -> IndexPlan:
        """The index a rebuild would make now (family, parameters, memory estimate)."""
        return self.planner.plan()

    def build(self, plan: IndexPlan | None = None) -> LiveIndex:
        """Rebuild from stored embeddings (no re-encoding), save it, and return it caught up."""
        index = self.planner.build(plan or self.planner.plan(), progress=self.progress)
        index.save()
        live = LiveIndex(
            index,
            self.catalog,
            save_interval_s=self.settings.index_save_interval_s,
            maintainer=self.planner,
            progress=self.progress,
        )
        live.catch_up()
        return live

    def tune(
        self, live: LiveIndex, target: float | None = None, queries: int = 200, k: int = 100
    ) -> TuneReport:
        """Set efSearch / nprobe to the cheapest value meeting the recall target; saved."""
        live.catch_up()
        if not isinstance(live.index, FaissIndex):
            raise InvalidInput("only FAISS indexes can be tuned")
        report = tune_index(
            live.index,
            self.catalog,
            target=self.settings.recall_target if target is None else target,
            queries=queries,
            k=k,
            progress=self.progress,
        )
        live.save(force=True, changed=True)
        return report

    def describe(self, live: LiveIndex) -> dict[str, Any]:
        return live.describe()
