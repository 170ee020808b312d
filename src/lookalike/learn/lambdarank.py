"""Training the learned ranker: LightGBM's `lambdarank` objective over `FEATURES`, one
group per logged search, rows weighted for position bias, seeded and deterministic.

The model is saved in LightGBM's text format (`model_to_string`), never pickled."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lookalike.errors import ConfigError
from lookalike.learn.dataset import RankingData
from lookalike.learn.metrics import pad, per_search
from lookalike.learn.propensity import Propensities
from lookalike.search.ranking.features import FEATURES


@dataclass(frozen=True)
class LambdaRankParams:
    rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 20
    smoothing: int = 15  # rounds the validation curve is averaged over to pick the best
    min_rounds: int = 10
    seed: int = 0
    threads: int = 2

    def lightgbm(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank",
            # Early stopping watches the debiased NDCG@10 of metrics.py (LightGBM's own
            # NDCG would reward the logging ranker's order: its clicks are position-biased).
            "metric": "None",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambdarank_truncation_level": 20,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbose": -1,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fitted:
    text: str  # LightGBM's text format
    rounds: int  # kept
    valid_ndcg: float | None  # debiased NDCG@10 on the validation searches at that point


def lightgbm_module():
    try:
        import lightgbm
    except ImportError as exc:
        raise ConfigError(
            "training a ranker needs LightGBM: pip install 'lookalike[rank]'"
        ) from exc
    return lightgbm


def train_lambdarank(
    train: RankingData,
    weights: np.ndarray,
    valid: RankingData | None,
    valid_propensities: Propensities | None,
    params: LambdaRankParams,
    *,
    progress: bool = True,
    label: str = "lambdarank",
) -> Fitted:
    """The model and the rounds kept. Groups without an event teach lambdarank nothing and
    are left out. With `valid`, the model keeps the rounds where its debiased NDCG@10
    (propensities `valid_propensities`), averaged over `smoothing` rounds, peaks: a small
    validation set's curve is too noisy to stop at its first dip."""
    lgb = lightgbm_module()
    train, weights = _graded(train, weights)
    names = list(FEATURES)
    dtrain = lgb.Dataset(
        train.features,
        label=train.grades,
        group=train.group_sizes,
        weight=weights,
        feature_name=names,
        free_raw_data=False,
    )
    sets: list[Any] = []
    callbacks: list[Any] = []
    feval = None
    curve: dict[str, dict[str, list[float]]] = {}
    if valid is not None and valid_propensities is not None:
        valid = valid.subset(valid.with_events())
        if valid.groups:
            padded = pad(valid, valid_propensities)
            sets = [
                lgb.Dataset(
                    valid.features,
                    label=valid.grades,
                    group=valid.group_sizes,
                    feature_name=names,
                    reference=dtrain,
                )
            ]

            def feval(preds: np.ndarray, _: Any) -> tuple[str, float, bool]:
                ndcg, _mrr = per_search(padded, np.asarray(preds, dtype=np.float64))
                return "debiased_ndcg@10", float(ndcg.mean()), True

            callbacks.append(lgb.record_evaluation(curve))
    with tqdm(total=params.rounds, desc=label, unit="round", disable=not progress) as bar:
        callbacks.append(lambda env: bar.update(1))
        booster = lgb.train(
            params.lightgbm(),
            dtrain,
            num_boost_round=params.rounds,
            valid_sets=sets,
            feval=feval,
            callbacks=callbacks,
        )
    kept, score = booster.current_iteration(), None
    if curve:
        scores = np.asarray(next(iter(curve.values()))["debiased_ndcg@10"])
        kept, score = _peak(scores, params.smoothing, params.min_rounds)
    return Fitted(booster.model_to_string(num_iteration=kept), kept, score)


def _peak(scores: np.ndarray, window: int, min_rounds: int) -> tuple[int, float]:
    """The round (1-based, at least `min_rounds`) where the trailing mean of `scores`
    over `window` rounds is highest, and that mean."""
    if len(scores) <= min_rounds:
        return len(scores), float(scores[-window:].mean())
    cumulative = np.concatenate([[0.0], np.cumsum(scores)])
    rounds = np.arange(1, len(scores) + 1)
    start = np.maximum(rounds - window, 0)
    smoothed = (cumulative[rounds] - cumulative[start]) / (rounds - start)
    smoothed[: min_rounds - 1] = -np.inf
    best = int(np.argmax(smoothed))
    return best + 1, float(smoothed[best])


def _graded(data: RankingData, weights: np.ndarray) -> tuple[RankingData, np.ndarray]:
    keep = data.with_events()
    rows = np.repeat(keep, data.group_sizes)
    return data.subset(keep), weights[rows]
