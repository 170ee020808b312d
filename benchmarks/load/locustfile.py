"""Locust scenarios against a running `lookalike serve` (run by `benchmarks/load/run.py`,
or by hand: `locust -f benchmarks/load/locustfile.py --headless -u 8 -t 20s --host
http://127.0.0.1:8000 TextUser`).

One user class per scenario; each request is named after its scenario in the stats:

* TextUser      GET  /v1/search/text?q=...
* ImageUser     POST /v1/search/image (a PNG upload)
* SimilarUser   GET  /v1/products/{id}/similar (no encoding at all)
* FilteredUser  GET  /v1/products/{id}/similar with a category and a price ceiling
* HybridUser    POST /v1/search (JSON: a text and a base64 image)
* MixUser       all of the above, plus 5% writes (PUT /v1/products/{id}, multipart with
                an image, sent with LOAD_WRITE_KEY)

Every query is unique by default, so neither the embedding cache nor the result cache can
answer it: texts are random word combinations with a per-run serial number, images are
random noise (encoding costs the same for any pixels), product ids are walked in a
shuffled order. LOAD_CACHED=1 draws every query from a pool of 16 instead (after the first
round, the caches answer).

Environment (the runner sets it):
  LOAD_CATALOG    JSON file: {"ids": [...], "categories": [...], "price_max": float}
  LOAD_CACHED     1: the cached variant
  LOAD_RATE       requests per second per user (open loop: each user sends at the times of
                  its own Poisson process, whatever the replies take); unset or 0: closed
                  loop, each user sends its next request when the last returns
  LOAD_WRITE_KEY  the write key for MixUser's writes
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable

from locust import FastHttpUser, constant, task
from PIL import Image

IMAGE_SIDE = 64  # above the server's smallest accepted side (50)
POOL = 16  # distinct queries of the cached variant

COLOURS = [
    "red",
    "black",
    "white",
    "navy",
    "grey",
    "beige",
    "olive",
    "burgundy",
    "pink",
    "mustard",
    "teal",
    "cream",
    "khaki",
    "lilac",
    "brown",
    "orange",
]
MATERIALS = [
    "cotton",
    "linen",
    "wool",
    "denim",
    "leather",
    "suede",
    "silk",
    "knitted",
    "corduroy",
    "canvas",
]
ITEMS = [
    "dress",
    "shirt",
    "t-shirt",
    "pullover",
    "coat",
    "trousers",
    "sneakers",
    "sandals",
    "ankle-boots",
    "bag",
    "jacket",
    "skirt",
    "hoodie",
    "loafers",
]
STYLES = [
    "summer",
    "vintage",
    "slim",
    "oversized",
    "casual",
    "formal",
    "sporty",
    "classic",
    "cropped",
    "striped",
]

_catalog = json.loads(open(os.environ["LOAD_CATALOG"]).read())  # noqa: SIM115
_ids: list[str] = list(_catalog["ids"])
random.Random(os.getpid()).shuffle(_ids)
_id_walk = itertools.cycle(_ids)
_serial = itertools.count(random.randrange(10**6) * 1000)  # unique within and across runs
_rng = random.Random()
CACHED = os.environ.get("LOAD_CACHED", "0") == "1"
RATE = float(os.environ.get("LOAD_RATE") or 0)
WRITE_KEY = os.environ.get("LOAD_WRITE_KEY", "")


def _text() -> str:
    if CACHED:
        n = _rng.randrange(POOL)
        return f"{COLOURS[n]} {ITEMS[n % len(ITEMS)]}"
    words = [_rng.choice(COLOURS), _rng.choice(MATERIALS), _rng.choice(STYLES), _rng.choice(ITEMS)]
    return f"{' '.join(words)} {next(_serial)}"


def _png() -> bytes:
    seed = _rng.randrange(POOL) if CACHED else None
    noise = random.Random(seed).randbytes(IMAGE_SIDE * IMAGE_SIDE * 3) if CACHED else None
    pixels = noise if noise is not None else os.urandom(IMAGE_SIDE * IMAGE_SIDE * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (IMAGE_SIDE, IMAGE_SIDE), pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _product_id() -> str:
    return _ids[_rng.randrange(min(POOL, len(_ids)))] if CACHED else next(_id_walk)


def _filter_params() -> dict[str, object]:
    # The price ceiling varies in cents (a new filter: a new result-cache key), the category
    # cuts the catalog to about one in len(categories).
    if CACHED:
        return {"category": _catalog["categories"][0], "price_max": _catalog["price_max"] / 2}
    price = round(_rng.uniform(0.2, 1.0) * _catalog["price_max"], 2)
    return {"category": _rng.choice(_catalog["categories"]), "price_max": price}


def poisson_arrivals(rate: float) -> Callable[[FastHttpUser], float]:
    """Open loop: a user's requests are due at the times of its own Poisson process (gaps
    drawn from an exponential of mean 1/rate), counted from its schedule, not from the last
    reply, so a slow reply does not thin the offered rate. A user still waiting on a reply
    when its next request is due sends it on return; one that fell more than a gap behind
    starts a fresh schedule instead of catching up in a burst.

    Not locust's `constant_throughput`: that waits `1/rate - task time` after each reply, so
    after one stall longer than a period (a slow first request, a pause) every user has
    waited 0 and fires at the same instant, and the users stay in step from then on: the
    server saw 32 requests at once every 0.8 s instead of 40 spread over each second (a
    ~100 ms "queue" stage at 40/s)."""
    gap = 1.0 / rate

    def wait_time(user: FastHttpUser) -> float:
        now = time.monotonic()
        due = getattr(user, "_due", now) + _rng.expovariate(rate)
        if due < now - gap:
            due = now + _rng.expovariate(rate)
        user._due = due
        return max(0.0, due - now)

    return wait_time


class _Scenario(FastHttpUser):
    abstract = True
    wait_time = poisson_arrivals(RATE) if RATE > 0 else constant(0)

    def text(self) -> None:
        self.client.get("/v1/search/text", params={"q": _text()}, name="text")

    def image(self) -> None:
        files = {"image": ("query.png", _png(), "image/png")}
        self.client.post("/v1/search/image", files=files, name="image")

    def similar(self) -> None:
        self.client.get(f"/v1/products/{_product_id()}/similar", name="similar")

    def filtered(self) -> None:
        url = f"/v1/products/{_product_id()}/similar"
        self.client.get(url, params=_filter_params(), name="filtered")

    def hybrid(self) -> None:
        body = {"text": _text(), "images": [base64.b64encode(_png()).decode()], "limit": 20}
        self.client.post("/v1/search", json=body, name="hybrid")

    def write(self) -> None:
        product = f"load-{uuid.uuid4().hex[:12]}"
        fields = {
            "title": _text(),
            "category": _rng.choice(_catalog["categories"]),
            "price": f"{_rng.uniform(5, _catalog['price_max']):.2f}",
        }
        files = {"image": ("new.png", _png(), "image/png")}
        self.client.put(
            f"/v1/products/{product}",
            data=fields,
            files=files,
            headers={"X-API-Key": WRITE_KEY},
            name="write",
        )


class TextUser(_Scenario):
    @task
    def go(self) -> None:
        self.text()


class ImageUser(_Scenario):
    @task
    def go(self) -> None:
        self.image()


class SimilarUser(_Scenario):
    @task
    def go(self) -> None:
        self.similar()


class FilteredUser(_Scenario):
    @task
    def go(self) -> None:
        self.filtered()


class HybridUser(_Scenario):
    @task
    def go(self) -> None:
        self.hybrid()


class MixUser(_Scenario):
    """Reads in shop-front proportions, 5% writes."""

    tasks = {  # noqa: RUF012  (locust's own class attribute)
        _Scenario.text: 40,
        _Scenario.similar: 25,
        _Scenario.image: 15,
        _Scenario.filtered: 10,
        _Scenario.hybrid: 5,
        _Scenario.write: 5,
    }
