"""`lookalike demo --simulate-shoppers`: simulated shoppers teach the demo a ranker.

Seeded, simulated shoppers use the demo's real API on 127.0.0.1 (their searches, clicks,
add-to-cart and purchase events are logged as any client's), then `train-ranker` learns
from those logs and is evaluated on the later held-out period; finally an A/B run sends
half of the sessions to the learned ranker and `lookalike report`'s numbers compare the
two arms.

The shoppers' preferences are ours, chosen for the simulation, not measured anywhere:

* each session wants one Fashion-MNIST class (its searches: "more like this" on an item of
  the class, an uploaded photo of one, or a text query naming it; some with a price cap);
* it likes an item when it is of that class, rated at least 4.3 and priced between 45%
  and 100% of the class's median price (a value-for-money band). The hand-weighted
  ranker does not encode this: it knows no price, and weighs rating linearly;
* it browses as a position-biased cascade: it looks at the next result with probability
  0.8, clicks a liked item with probability 0.55 (another item of the class 0.06, any
  other 0.01), adds a clicked liked item to the cart half the time and buys 40% of those,
  and stops after a liked click 70% of the time.

So the numbers this prints say how well the learning loop recovers preferences it was not
told; they are not real-world gains.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from tqdm.auto import tqdm

from lookalike.config import Settings

Echo = Callable[[str], None]

LIKED_RATING = 4.3
PRICE_BAND = (0.45, 1.0)  # x the class's median price
LOOK_NEXT = 0.8
CLICK = {"liked": 0.55, "class": 0.06, "other": 0.01}
CART, PURCHASE, SATISFIED = 0.5, 0.4, 0.7
QUERY_MIX = {"similar": 0.6, "text": 0.25, "image": 0.15}
PRICE_CAP_SHARE = 0.3  # searches with price_max = 1.5 x the class median


@dataclass(frozen=True)
class ShopperOptions:
    searches: int = 2500  # learning phase: the hand-weighted ranker serves
    ab_searches: int = 1000  # A/B phase: half the sessions get the learned ranker
    seed: int = 0
    explore_share: float = 0.1  # searches whose top slots are shuffled (position bias)
    candidate_share: float = 0.5
    limit: int = 20


@dataclass
class ShopperRun:
    training: Any  # learn.TrainRankerReport
    ab_rows: list  # quality.ranking_quality.ArmQuality, day "all"
    searches: int
    events: int
    seconds: float


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    price: float
    image: Path


class Shopper:
    """One session: a class it wants and the seeded choices it makes."""

    def __init__(self, category: str, median_price: float, rng: random.Random) -> None:
        self.session = uuid.UUID(int=rng.getrandbits(128)).hex
        self.category = category
        self.median_price = median_price
        self.band = (PRICE_BAND[0] * median_price, PRICE_BAND[1] * median_price)
        self.rng = rng

    def likes(self, hit: dict) -> bool:
        rating = (hit.get("attributes") or {}).get("rating") or 0
        price = hit.get("price")
        return (
            hit.get("category") == self.category
            and rating >= LIKED_RATING
            and price is not None
            and self.band[0] <= price <= self.band[1]
        )

    def browse(self, results: list[dict]) -> list[tuple[int, str, str]]:
        """(position, product id, kind) of what the shopper does, top down."""
        events = []
        for position, hit in enumerate(results, start=1):
            if position > 1 and self.rng.random() > LOOK_NEXT:
                break
            liked = self.likes(hit)
            kind = "liked" if liked else "class" if hit["category"] == self.category else "other"
            if self.rng.random() >= CLICK[kind]:
                continue
            events.append((position, hit["id"], "click"))
            if liked and self.rng.random() < CART:
                events.append((position, hit["id"], "cart"))
                if self.rng.random() < PURCHASE:
                    events.append((position, hit["id"], "purchase"))
            if liked and self.rng.random() < SATISFIED:
                break
        return events


def simulate_shoppers(
    settings: Settings, manifest: Path, options: ShopperOptions, echo: Echo = print
) -> ShopperRun:
    """Serve `settings`' catalog on 127.0.0.1, send the shoppers, train, A/B test."""
    from lookalike.api import create_app
    from lookalike.learn import TrainRankerConfig, train_ranker
    from lookalike.quality.ranking_quality import format_ranking_quality, ranking_quality

    started = time.monotonic()
    items = _read_items(manifest)
    by_class: dict[str, list[Item]] = {}
    for item in items:
        by_class.setdefault(item.category, []).append(item)
    medians = {c: median(i.price for i in members) for c, members in by_class.items()}
    served = settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": _free_port(),
            "rank_explore_share": options.explore_share,
            "ranker_candidate": "learned",
            "ranker_candidate_share": options.candidate_share,
            "ranker_reload_interval_s": 1.0,
            "search_log": True,
        }
    )
    app = create_app(served)
    rng = random.Random(options.seed)
    with _Server(app, served.port) as url, httpx.Client(base_url=url, timeout=60) as client:
        engine = app.state.engine
        log = app.state.tracker.log
        echo(
            f"== simulated shoppers, phase 1: {options.searches} searches on {url} "
            f"(hand-weighted ranker; {options.explore_share:.0%} with shuffled top slots)"
        )
        t0 = time.time()
        events = _shop(client, by_class, medians, options.searches, options, rng, "learning")
        log.flush()
        t1 = time.time()
        echo("== train-ranker on the phase 1 logs (the latest 25% held out)")
        report = train_ranker(
            engine.catalog, served, TrainRankerConfig(since=t0, until=t1), echo=echo
        )
        echo(report.table())
        echo(f"   model {report.version}: {report.decision}")
        time.sleep(served.ranker_reload_interval_s * 1.5)  # the server picks it up
        echo(
            f"== phase 2, A/B: {options.ab_searches} searches; "
            f"{options.candidate_share:.0%} of sessions get the learned ranker"
        )
        t2 = time.time()
        events += _shop(client, by_class, medians, options.ab_searches, options, rng, "A/B")
        log.flush()
        rows = [r for r in ranking_quality(engine.catalog, t2, time.time() + 1) if r.day == "all"]
        echo(format_ranking_quality(rows))
    echo(
        "   (simulated shoppers with preferences chosen for the demo: these figures show the "
        "loop learning them, not real-world gains)"
    )
    return ShopperRun(
        report, rows, options.searches + options.ab_searches, events, time.monotonic() - started
    )


def _shop(
    client: httpx.Client,
    by_class: dict[str, list[Item]],
    medians: dict[str, float],
    searches: int,
    options: ShopperOptions,
    rng: random.Random,
    label: str,
) -> int:
    classes = sorted(by_class)
    done = events = 0
    with tqdm(total=searches, desc=f"shoppers ({label})", unit="search") as bar:
        while done < searches:
            category = rng.choice(classes)
            shopper = Shopper(category, medians[category], rng)
            for _ in range(rng.randint(1, 3)):
                if done >= searches:
                    break
                body = _search(client, shopper, by_class[category], options, rng)
                for position, product_id, kind in shopper.browse(body["results"]):
                    event = {
                        "search_id": body["search_id"],
                        "product_id": product_id,
                        "position": position,
                        "kind": kind,
                    }
                    client.post("/v1/events/click", json=event).raise_for_status()
                    events += 1
                done += 1
                bar.update(1)
    return events


def _search(
    client: httpx.Client,
    shopper: Shopper,
    members: list[Item],
    options: ShopperOptions,
    rng: random.Random,
) -> dict:
    headers = {"X-Session-Id": shopper.session}
    params: dict[str, Any] = {"limit": options.limit}
    if rng.random() < PRICE_CAP_SHARE:
        params["price_max"] = round(1.5 * shopper.median_price, 2)
    kind = rng.choices(list(QUERY_MIX), weights=list(QUERY_MIX.values()))[0]
    item = rng.choice(members)
    if kind == "text":
        params["q"] = f"a photo of a {shopper.category.lower()}"
        response = client.get("/v1/search/text", params=params, headers=headers)
    elif kind == "image" and item.image.is_file():
        files = {"image": (item.image.name, item.image.read_bytes(), "image/png")}
        response = client.post("/v1/search/image", params=params, files=files, headers=headers)
    else:
        response = client.get(f"/v1/products/{item.id}/similar", params=params, headers=headers)
    response.raise_for_status()
    return response.json()


def _read_items(manifest: Path) -> list[Item]:
    items = []
    with open(manifest, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            items.append(
                Item(
                    row["id"],
                    row["category"],
                    float(row["price"]),
                    manifest.parent / row["image"],
                )
            )
    return items


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """Uvicorn serving `app` on 127.0.0.1 in a thread, for the length of a with block."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="shoppers-api", daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 600
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo API did not start")
            time.sleep(0.1)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
