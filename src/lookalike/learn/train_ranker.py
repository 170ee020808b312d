"""`lookalike train-ranker`: learn a ranker from the search log, evaluate it on a later
held-out period beside the baselines, store it in the catalog, and promote it only if it
beats the ranker serving now.

The window's searches are split by time: the earliest (1 - holdout) share trains (its
last `valid` share stops the boosting early), the rest is the held-out later period. On
it, in one run, with 95% bootstrap intervals over searches: similarity alone, the hand
weights of the settings, hand weights grid-searched on the training logs, the learned
ranker without position-bias correction, the learned ranker, and the promoted model
serving now (if any).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import InvalidInput, LookalikeError
from lookalike.learn.dataset import RankingData, build_dataset
from lookalike.learn.grid import grid_search, hand_scores
from lookalike.learn.lambdarank import (
    Fitted,
    LambdaRankParams,
    lightgbm_module,
    train_lambdarank,
)
from lookalike.learn.metrics import Estimate, bootstrap, pad, per_search
from lookalike.learn.propensity import (
    NO_CORRECTION,
    Propensities,
    estimate_propensities,
    ipw_weights,
)
from lookalike.search.ranking.features import FEATURES, SIGNALS
from lookalike.search.ranking.hand_weighted import RerankWeights
from lookalike.search.ranking.model_files import (
    MODEL_FORMAT,
    LearnedModel,
    load_model,
    model_digest,
    write_model_dir,
)

MIN_GRADED_SEARCHES = 30
IPW_CLIPS = (0.05, 0.2, 0.5, 1.0)  # lowest propensity a click's weight may use; 1 = none
SIMILARITY = "similarity alone"
HAND = "hand weights (settings)"
GRID = "hand weights (grid-searched)"
UNCORRECTED = "learned, no position correction"
LEARNED = "learned (lambdarank)"
CURRENT = "serving now"


@dataclass(frozen=True)
class TrainRankerConfig:
    since: float
    until: float
    holdout: float = 0.25  # the latest share of the window's searches, held out
    valid: float = 0.15  # the latest share of the training searches, for early stopping
    position_bias: Literal["ipw", "none"] = "ipw"
    params: LambdaRankParams = field(default_factory=LambdaRankParams)
    promote: bool = True
    output: Path | None = None
    resamples: int = 1000


@dataclass
class Row:
    ranker: str
    ndcg: Estimate
    mrr: Estimate
    note: str = ""


@dataclass
class TrainRankerReport:
    version: str
    rows: list[Row]
    difference: tuple[Estimate, Estimate]  # learned - grid hand weights: NDCG@10, MRR
    promoted: bool
    decision: str
    manifest: dict[str, Any]
    searches: dict[str, int]

    def table(self) -> str:
        """The held-out comparison as a Markdown table."""
        lines = [
            "| ranker | NDCG@10 [95% CI] | MRR [95% CI] | |",
            "|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(f"| {row.ranker} | {row.ndcg} | {row.mrr} | {row.note} |")
        ndcg, mrr = self.difference
        lines.append(f"| learned - grid-searched hand weights (paired) | {ndcg} | {mrr} | |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promoted": self.promoted,
            "decision": self.decision,
            "searches": self.searches,
            "heldout": {
                row.ranker: {"ndcg@10": row.ndcg.to_list(), "mrr": row.mrr.to_list()}
                for row in self.rows
            },
            "learned_minus_grid": {
                "ndcg@10": self.difference[0].to_list(),
                "mrr": self.difference[1].to_list(),
            },
            "manifest": self.manifest,
        }


def train_ranker(
    catalog: Catalog,
    settings: Settings,
    config: TrainRankerConfig,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = lambda _: None,
) -> TrainRankerReport:
    lgb = lightgbm_module()
    started = time.time()
    searches = catalog.logged_searches(config.since, config.until)
    data = build_dataset(searches)
    graded = int(data.with_events().sum())
    echo(
        f"{len(searches)} searches logged in the window, {data.groups} with features, "
        f"{graded} with a click or purchase"
        + (f" (left out: {dict(data.skipped)})" if data.skipped else "")
    )
    if graded < MIN_GRADED_SEARCHES:
        raise InvalidInput(
            f"{graded} searches with events in the window; at least {MIN_GRADED_SEARCHES} are "
            "needed (widen --since/--until, or log more traffic)"
        )
    train, heldout, split_at = _split(data, config.holdout)
    fit, valid, _ = _split(train, config.valid)

    evaluation = _evaluation_propensities(train, echo)
    if config.position_bias == "ipw" and evaluation.method == "none":
        estimate_propensities(train)  # raises, saying what is missing
    echo(f"position bias: {evaluation.method} {_slots(evaluation)}")

    # The clip of the inverse propensities trades bias for variance: chosen on the
    # validation searches (the held-out ones stay untouched); 1.0 = no correction.
    clips = IPW_CLIPS if config.position_bias == "ipw" else (1.0,)
    fitted: dict[float, tuple[Propensities, Fitted]] = {}
    for clip in clips:
        props = NO_CORRECTION if clip >= 1.0 else estimate_propensities(train, clip=clip)
        weights = ipw_weights(fit, props)
        label = "lambdarank" + (f", clip {clip:g}" if len(clips) > 1 else "")
        fitted[clip] = (
            props,
            train_lambdarank(
                fit, weights, valid, evaluation, config.params, progress=progress, label=label
            ),
        )
    chosen = max(clips, key=lambda c: (fitted[c][1].valid_ndcg or 0.0, -c))
    model = fitted[chosen][1]
    if len(clips) > 1:
        scores = ", ".join(f"{c:g}: {fitted[c][1].valid_ndcg or 0:.4f}" for c in clips)
        echo(f"validation NDCG@10 by propensity clip ({scores}): clip {chosen:g} chosen")
    model_text, rounds = model.text, model.rounds
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + model_digest(model_text)[:8]
    manifest: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": version,
        "features": list(FEATURES),
        "model_sha256": model_digest(model_text),
        "objective": "lambdarank",
        "params": config.params.to_dict(),
        "rounds": rounds,
        "lightgbm": lgb.__version__,
        "lookalike": _lookalike_version(),
        "trained_at": started,
        "window": {"since": config.since, "until": config.until, "heldout_from": split_at},
        "searches": {
            "train": fit.groups,
            "valid": valid.groups,
            "heldout": heldout.groups,
            "train_with_events": int(train.with_events().sum()),
            "heldout_with_events": int(heldout.with_events().sum()),
        },
        "position_bias": {
            "method": "none" if chosen >= 1.0 else "ipw",
            "propensities": evaluation.to_dict(),
            "clip": chosen,
            "validation_ndcg@10_by_clip": {
                str(c): round(fitted[c][1].valid_ndcg or 0.0, 4) for c in clips
            },
        },
    }
    learned = load_model(manifest, model_text)

    padded_train = pad(train, evaluation)
    grid = grid_search(train.features, padded_train, progress=progress)
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        SIMILARITY: lambda f: f[:, 0],
        HAND: lambda f: hand_scores(f, RerankWeights.from_settings(settings)),
        GRID: lambda f: hand_scores(f, grid.weights),
    }
    notes = {
        GRID: _weights_note(grid.weights),
        LEARNED: f"{version}, {rounds} rounds, "
        + ("no position correction" if chosen >= 1.0 else f"IPW clipped at {chosen:g}"),
    }
    if chosen < 1.0 and 1.0 in fitted:
        uncorrected_text = fitted[1.0][1].text
        uncorrected = load_model(
            {**manifest, "model_sha256": model_digest(uncorrected_text)}, uncorrected_text
        )
        scorers[UNCORRECTED] = uncorrected.predict
    elif chosen >= 1.0 and len(clips) > 1:
        strongest = fitted[clips[0]][1].text
        corrected = load_model({**manifest, "model_sha256": model_digest(strongest)}, strongest)
        scorers[f"learned, IPW clipped at {clips[0]:g}"] = corrected.predict
    scorers[LEARNED] = learned.predict
    current = _current_model(catalog, echo)
    if current is not None:
        scorers[CURRENT] = current.predict
        notes[CURRENT] = current.version

    padded = pad(heldout, evaluation)
    values: dict[str, np.ndarray] = {}
    for name, scorer in scorers.items():
        ndcg, mrr = per_search(padded, scorer(heldout.features))
        values[f"{name}/ndcg"], values[f"{name}/mrr"] = ndcg, mrr
    estimate, difference = bootstrap(values, resamples=config.resamples, seed=config.params.seed)
    rows = [
        Row(name, estimate(f"{name}/ndcg"), estimate(f"{name}/mrr"), notes.get(name, ""))
        for name in scorers
    ]
    gap = (
        difference(f"{LEARNED}/ndcg", f"{GRID}/ndcg"),
        difference(f"{LEARNED}/mrr", f"{GRID}/mrr"),
    )
    baseline = CURRENT if current is not None else HAND
    learned_ndcg = estimate(f"{LEARNED}/ndcg").mean
    baseline_ndcg = estimate(f"{baseline}/ndcg").mean
    beats = learned_ndcg > baseline_ndcg
    manifest["metrics"] = {
        "heldout_searches_with_events": len(padded.gains),
        "evaluation_position_bias": evaluation.method,
        **{row.ranker: {"ndcg@10": row.ndcg.to_list(), "mrr": row.mrr.to_list()} for row in rows},
        "learned_minus_grid": {"ndcg@10": gap[0].to_list(), "mrr": gap[1].to_list()},
        "grid_weights": _weights_dict(grid.weights),
    }
    # The manifest changed after `learned` was loaded from it: the stored one is final.
    catalog.save_ranker(version, manifest, model_text)
    if config.output is not None:
        write_model_dir(config.output, manifest, model_text)
    if not beats:
        decision = (
            f"not promoted: held-out NDCG@10 {learned_ndcg:.4f} does not beat {baseline} "
            f"({baseline_ndcg:.4f})"
        )
    elif not config.promote:
        decision = f"not promoted (--no-promote); it beats {baseline} on held-out NDCG@10"
    else:
        catalog.promote_ranker(version)
        decision = (
            f"promoted: held-out NDCG@10 {learned_ndcg:.4f} beats {baseline} "
            f"({baseline_ndcg:.4f}); LOOKALIKE_RANKER=learned serves it"
        )
    return TrainRankerReport(
        version,
        rows,
        gap,
        beats and config.promote,
        decision,
        manifest,
        {"train": fit.groups, "valid": valid.groups, "heldout": heldout.groups},
    )


def _split(data: RankingData, share: float) -> tuple[RankingData, RankingData, float]:
    """(earlier, later, boundary): the latest `share` of the searches by time is later."""
    if not data.groups:
        return data, data, 0.0
    order = np.sort(data.ts)
    boundary = float(order[min(int(len(order) * (1 - share)), len(order) - 1)])
    later = data.ts >= boundary
    return data.subset(~later), data.subset(later), boundary


def _evaluation_propensities(train: RankingData, echo: Callable[[str], None]) -> Propensities:
    try:
        return estimate_propensities(train)
    except InvalidInput as exc:
        echo(f"evaluating on raw clicks (no position-bias correction): {exc}")
        return NO_CORRECTION


def _current_model(catalog: Catalog, echo: Callable[[str], None]) -> LearnedModel | None:
    version = catalog.promoted_ranker()
    if version is None:
        return None
    try:
        stored = catalog.ranker(version)
        return load_model(stored.manifest, stored.model)
    except LookalikeError as exc:
        echo(f"the promoted model {version} cannot be loaded ({exc}): comparing with hand weights")
        return None


def _slots(propensities: Propensities) -> str:
    if propensities.method == "none":
        return "(every slot counts the same)"
    shown = ", ".join(f"{p:.2f}" for p in propensities.by_position[:10])
    return (
        f"(attention per slot, from {propensities.searches} randomised searches with "
        f"{propensities.clicks} clicks: {shown})"
    )


def _weights_dict(weights: RerankWeights) -> dict[str, float]:
    return {name: float(value) for name, value in zip(SIGNALS, weights.as_array(), strict=True)}


def _weights_note(weights: RerankWeights) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in _weights_dict(weights).items())


def _lookalike_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookalike")
    except PackageNotFoundError:
        return "unknown"
