"""Position-bias correction recovers a preference raw clicks hide.

The synthetic shoppers like well-rated hits and nothing else, but the logging ranker puts
the most similar hit first and the first slot is clicked 60% of the time whatever it
holds; lower slots are looked at less (1/position). Trained on raw clicks, lambdarank
learns "be the most similar hit". Weighted by inverse propensities measured on the 20% of
searches shown in random order, it learns the rating preference: it puts a well-rated hit
above the poorly rated most-similar one, as the shoppers want.
"""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.learn import (
    NO_CORRECTION,
    build_dataset,
    estimate_propensities,
    ipw_weights,
)
from lookalike.learn.lambdarank import LambdaRankParams, train_lambdarank
from lookalike.search.ranking import FEATURES
from lookalike.search.ranking.model_files import MODEL_FORMAT, load_model, model_digest
from tests.support.ranking_logs import COLUMN, ClickModel, random_rows, simulate

pytest.importorskip("lightgbm", reason="needs lookalike[rank]")

SHOPPERS = ClickModel(
    likes=lambda rows: np.where(rows[:, COLUMN["rating"]] > 0.5, 0.9, 0.0),
    top_click=0.6,
)
PARAMS = LambdaRankParams(rounds=80, num_leaves=7, seed=3, threads=1)


def fit(data, weights):
    text = train_lambdarank(data, weights, None, None, PARAMS, progress=False).text
    manifest = {
        "format": MODEL_FORMAT,
        "version": "test",
        "features": list(FEATURES),
        "model_sha256": model_digest(text),
    }
    return load_model(manifest, text)


def preference(model, rng: np.random.Generator, trials: int = 400) -> float:
    """How often the model puts a well-rated hit above a poorly rated hit that is the most
    similar of the page (what the shoppers want: always)."""
    wins = 0
    for _ in range(trials):
        rows = random_rows(rng, 10)
        top = int(np.argmax(rows[:, 0]))
        other = (top + 1 + int(rng.integers(9))) % 10
        rows[top, COLUMN["rating"]] = rng.uniform(0, 0.5)
        rows[other, COLUMN["rating"]] = rng.uniform(0.5, 1)
        scores = model.predict(rows)
        wins += scores[other] > scores[top]
    return wins / trials


def test_ipw_recovers_the_rating_preference_raw_clicks_hide():
    data = build_dataset(simulate(3000, SHOPPERS, seed=1, explore_share=0.2))
    propensities = estimate_propensities(data)
    # Measured on the shuffled searches: slot 1 gets far more attention than slot 5.
    assert propensities.method == "randomised" and propensities.searches > 400
    assert propensities.by_position[0] == 1.0
    assert propensities.by_position[4] < 0.3 * propensities.by_position[0]

    raw = fit(data, ipw_weights(data, NO_CORRECTION))
    corrected = fit(data, ipw_weights(data, propensities))
    rng = np.random.default_rng(7)
    raw_share, corrected_share = preference(raw, rng), preference(corrected, rng)
    assert raw_share < 0.35, raw_share  # raw clicks: the most similar hit wins
    assert corrected_share > 0.65, corrected_share  # corrected: the well-rated one wins


def test_propensities_need_randomised_clicks():
    data = build_dataset(simulate(200, SHOPPERS, seed=2, explore_share=0.0))
    with pytest.raises(Exception, match="LOOKALIKE_RANK_EXPLORE_SHARE"):
        estimate_propensities(data)


def test_ipw_weights_count_a_low_click_more():
    data = build_dataset(simulate(1000, SHOPPERS, seed=4, explore_share=0.3))
    weights = ipw_weights(data, estimate_propensities(data))
    assert weights.mean() == pytest.approx(1.0)
    clicked = data.grades > 0
    low, top = clicked & (data.positions >= 5), clicked & (data.positions == 1)
    assert weights[low].mean() > 3 * weights[top].mean()
