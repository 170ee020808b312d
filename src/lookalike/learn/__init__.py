"""Learning to rank from the search log (`lookalike train-ranker`): training groups per
logged search, position-bias correction by inverse propensity weighting, a LightGBM
lambdarank model, and its offline evaluation beside grid-searched hand weights."""

from lookalike.learn.dataset import RankingData, build_dataset
from lookalike.learn.metrics import Estimate, bootstrap, pad, per_search
from lookalike.learn.propensity import (
    NO_CORRECTION,
    Propensities,
    estimate_propensities,
    ipw_weights,
)
from lookalike.learn.train_ranker import TrainRankerConfig, TrainRankerReport, train_ranker

__all__ = [
    "NO_CORRECTION",
    "Estimate",
    "Propensities",
    "RankingData",
    "TrainRankerConfig",
    "TrainRankerReport",
    "bootstrap",
    "build_dataset",
    "estimate_propensities",
    "ipw_weights",
    "pad",
    "per_search",
    "train_ranker",
]
