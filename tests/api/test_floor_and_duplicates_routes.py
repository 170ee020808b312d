"""The relevance floor and near-duplicates over HTTP: `min_score` and `collapse` on every
search route, `below_floor` in the answer, `GET /v1/products/{id}/duplicates`."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from tests.support.api_catalog import CatalogItem, png_bytes


def test_min_score_cuts_and_says_how_much(client: TestClient, catalog_items) -> None:
    everything = client.get("/v1/search/text", params={"q": "red circle", "min_score": -1})
    assert everything.status_code == 200
    body = everything.json()
    assert len(body["results"]) == 20 and body["below_floor"] == 0 and body["min_score"] is None
    sims = [hit["similarity"] for hit in body["results"]]
    cut = round((sims[4] + sims[5]) / 2, 6)
    floored = client.get("/v1/search/text", params={"q": "red circle", "min_score": cut}).json()
    assert [h["id"] for h in floored["results"]] == [h["id"] for h in body["results"][:5]]
    assert floored["below_floor"] == 15 and floored["min_score"] == pytest.approx(cut)
    # The combined route takes it in the body, image search and "similar" as a parameter.
    combined = client.post("/v1/search", json={"text": "red circle", "min_score": 1.0}).json()
    assert combined["results"] == [] and combined["below_floor"] == 20
    item = catalog_items[3]
    image = client.post(
        "/v1/search/image",
        params={"min_score": 0.9999},
        files={"image": ("q.png", item.path.read_bytes(), "image/png")},
    ).json()
    assert [h["id"] for h in image["results"]] == [item.id]
    similar = client.get(f"/v1/products/{item.id}/similar", params={"min_score": 1.0}).json()
    assert similar["results"] == [] and similar["below_floor"] == 20


@pytest.mark.parametrize("value", ["2", "-1.5", "nan", "lots"])
def test_bad_min_score_is_422(client: TestClient, value: str) -> None:
    assert client.get("/v1/search/text", params={"q": "x", "min_score": value}).status_code == 422
    body = {"text": "x", "min_score": value}
    assert client.post("/v1/search", json=body).status_code == 422


def test_bad_collapse_is_422(client: TestClient) -> None:
    assert client.get("/v1/search/text", params={"q": "x", "collapse": "all"}).status_code == 422


def test_duplicates_collapse_and_their_route(
    writable_client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    client = writable_client
    item = catalog_items[9]
    mirrored = png_bytes(ImageOps.mirror(Image.open(item.path)))
    put = client.put(
        "/v1/products/sku-mirror",
        files={"image": ("m.png", mirrored, "image/png")},
        data={"title": "mirrored", "category": item.category},
    )
    assert put.status_code == 201
    # The tiny test model's embeddings are far from invariant; the group is made by the
    # full pass with the embedding check open (the detector's rule is tested elsewhere;
    # grey hashes alone also pair same-shape products of other colours here: the reason
    # the embedding check exists).
    engine = client.app.state.engine
    engine.duplicates.rules = type(engine.duplicates.rules)(hash_similarity=-1.0, similarity=1.01)
    report, _ = engine.near_duplicates()
    assert [item.id, "sku-mirror"] in report.groups.values()

    listed = client.get(f"/v1/products/{item.id}/duplicates").json()
    assert [p["id"] for p in listed] == ["sku-mirror"]
    assert client.get("/v1/products/nope/duplicates").status_code == 404

    query = base64.b64encode(item.path.read_bytes()).decode()
    plain = client.post("/v1/search", json={"images": [query], "min_score": -1}).json()
    ids = [h["id"] for h in plain["results"]]
    assert item.id in ids and "sku-mirror" in ids
    collapsed = client.post(
        "/v1/search", json={"images": [query], "min_score": -1, "collapse": "duplicates"}
    ).json()
    hits = {h["id"]: h for h in collapsed["results"]}
    assert (item.id in hits) != ("sku-mirror" in hits)
    shown = hits.get(item.id) or hits["sku-mirror"]
    assert shown["duplicates"] == [({item.id, "sku-mirror"} - {shown["id"]}).pop()]
    text = client.get(
        "/v1/search/text", params={"q": "shapes", "collapse": "duplicates", "min_score": -1}
    ).json()
    assert not ({item.id, "sku-mirror"} <= {h["id"] for h in text["results"]})
