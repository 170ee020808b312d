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
    early_stopping: int = 30  # rounds without a better validation NDCG@10
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
) -> tuple[str, int]:
    """(model text, rounds kept). Groups without an event teach lambdarank nothing and
    are left out. With `valid`, boosting stops once its debiased NDCG@10 (propensities
    `valid_propensities`) has not improved for `early_stopping` rounds."""
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
    sets, callbacks, feval = [], [], None
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

            callbacks.append(lgb.early_stopping(params.early_stopping, verbose=False))
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
    kept = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    return booster.model_to_string(num_iteration=kept), kept


def _graded(data: RankingData, weights: np.ndarray) -> tuple[RankingData, np.ndarray]:
    keep = data.with_events()
    rows = np.repeat(keep, data.group_sizes)
    return data.subset(keep), weights[rows]
