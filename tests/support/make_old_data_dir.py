"""Write the data dir of tests/fixtures/old_data_dir_0818a52 with the code of commit 0818a52.

That commit is main before the architecture rework (named migrations, logs in the catalog
protocol, the SQL core); `tests/catalog/test_old_data_dir.py` checks that today's code opens
what it wrote. Run it with THAT commit's code, from a worktree of it:

    git worktree add --detach /tmp/old-main 0818a52
    cd /tmp/old-main
    PYTHONPATH=/tmp/old-main/src:/tmp/old-main python \\
        /path/to/checkout/tests/support/make_old_data_dir.py /tmp/lookalike-old-data-dir
    cp -r /tmp/lookalike-old-data-dir /path/to/checkout/tests/fixtures/old_data_dir_0818a52

(The catalog records the image paths it was given, under /tmp/lookalike-old-data-dir;
nothing in the test reads them.)

It draws 12 product images, indexes them with the tests' tiny model (random weights,
seed 0; not kept: the test builds the same one again, and `expected.json` records its
model id so a different build would be noticed), then searches through the API by text,
image, similar product and text again (the combined endpoint), clicks twice, and records
the answers and the quality report in `expected.json`. The images are kept beside the data
dir for image queries.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {"red": (214, 48, 49), "green": (39, 174, 96), "blue": (41, 128, 185)}
LIMIT = 5


def write_images(folder: Path) -> list[dict]:
    try:
        from tests.support.api_catalog import draw_product
    except ImportError:  # the flat test tree of 0818a52
        from tests.api.conftest import draw_product
    folder.mkdir(parents=True)
    rows = []
    for s, shape in enumerate(SHAPES):
        for c, (color, rgb) in enumerate(COLORS.items()):
            n = s * len(COLORS) + c
            name = f"{color}-{shape}.png"
            draw_product(shape, rgb, n, size=64).save(folder / name)
            rows.append(
                {
                    "id": f"old-{n:02d}",
                    "image": name,
                    "title": f"{color.capitalize()} {shape}",
                    "category": shape,
                    "brand": ("Acme", "Zenith")[n % 2],
                    "price": 10.0 + 2.5 * n,
                    "color": color,
                }
            )
    with open(folder / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(out: Path) -> None:
    try:
        from tests.support.tiny_models import build_tiny_openclip
    except ImportError:  # the flat test tree of 0818a52
        from tests.tiny_models import build_tiny_openclip
    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.config import Settings
    from lookalike.engine import Engine

    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="old-data-dir-"))
    model = build_tiny_openclip(work / "model")
    rows = write_images(out / "images")
    settings = Settings(
        _env_file=None,
        data_dir=out / "data",
        model_checkpoint=str(model),
        device="cpu",
        index_sync_interval_s=0.1,
    )
    with Engine(settings) as engine:
        report = engine.index_path(out / "images" / "catalog.csv")
        assert report.added == len(rows) and not report.failed, report
        model_id = engine.encoder.model_id

    queries = [
        ("text", "GET", "/v1/search/text", {"params": {"q": "red circle", "limit": LIMIT}}),
        ("image", "POST", "/v1/search/image", {"image": rows[4]["image"]}),
        ("similar", "GET", f"/v1/products/{rows[7]['id']}/similar", {"params": {"limit": LIMIT}}),
        ("hybrid", "POST", "/v1/search", {"json": {"text": "blue", "images": [], "limit": LIMIT}}),
    ]
    answers = []
    with TestClient(create_app(settings)) as client:
        for kind, method, path, options in queries:
            if "image" in options:
                data = (out / "images" / options["image"]).read_bytes()
                options = {
                    "files": {"image": ("q.png", data, "image/png")},
                    "params": {"limit": LIMIT},
                }
            response = client.request(method, path, **options)
            assert response.status_code == 200, response.text
            body = response.json()
            answers.append(
                {
                    "kind": kind,
                    "method": method,
                    "path": path,
                    "query": queries[len(answers)][3],
                    "ids": [hit["id"] for hit in body["results"]],
                    "scores": [hit["score"] for hit in body["results"]],
                    "search_id": body["search_id"],
                }
            )
        for answer, position in ((answers[0], 1), (answers[1], 2)):
            click = {
                "search_id": answer["search_id"],
                "product_id": answer["ids"][position - 1],
                "position": position,
            }
            assert client.post("/v1/events/click", json=click).status_code == 202
        client.app.state.tracker.log.flush()

    from typer.testing import CliRunner

    from lookalike.cli import app as cli_app

    result = CliRunner().invoke(cli_app, ["report", "--data-dir", str(out / "data"), "--json"])
    assert result.exit_code == 0, result.output
    expected = {
        "commit": commit,
        "written_at": time.time(),
        "model_id": model_id,
        "products": len(rows),
        "searches": answers,
        "report": json.loads(result.output),
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    shutil.rmtree(work)
    print(f"wrote {out} at commit {commit}: {sorted(p.name for p in (out / 'data').iterdir())}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
