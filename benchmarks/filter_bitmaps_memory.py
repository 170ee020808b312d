"""Filter bitmaps at catalog scale: build time, memory per item, and the time to answer a
filter (count + matching ids) against the catalog's SQL on the same products.

    PYTHONPATH=src python benchmarks/filter_bitmaps_memory.py              # 1M items
    PYTHONPATH=src python benchmarks/filter_bitmaps_memory.py --n 100000 --sql

Products have a category (50, skewed), a brand (1,000), a price in [0, 1000) and two
attributes (`color`: 12 values, `size`: 8 integers); memory is what the bitmaps and price
arrays hold (`FilterBitmaps.memory_bytes`) and the process's RSS growth while building
them (Python objects included). `--sql` also writes the products (no embeddings: a vector
id each is enough) to a SQLite catalog and times `count_matching` + `filter_vector_ids`.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.catalog.filter_bitmaps import FilterBitmaps
from lookalike.catalog.sqlite import SQLiteCatalog

COLORS = [
    "red",
    "blue",
    "green",
    "black",
    "white",
    "grey",
    "navy",
    "pink",
    "tan",
    "gold",
    "teal",
    "plum",
]


def products(n: int, rng: np.random.Generator) -> list[Product]:
    weights = 1.0 / np.arange(1, 51)
    categories = rng.choice(50, n, p=weights / weights.sum())
    brands = rng.integers(0, 1000, n)
    prices = np.floor(rng.uniform(0, 1000, n) * 100) / 100
    colors = rng.integers(0, len(COLORS), n)
    sizes = rng.integers(0, 8, n)
    return [
        Product(
            id=f"p{i}",
            category=f"c{categories[i]}",
            brand=f"b{brands[i]}",
            price=float(prices[i]),
            attributes={"color": COLORS[colors[i]], "size": int(sizes[i])},
            vector_id=i + 1,
            model_id="m",
        )
        for i in range(n)
    ]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def sql_answer(catalog: SQLiteCatalog, product_filter: ProductFilter) -> tuple:
    """What the candidate finder asked the catalog per filtered query before bitmaps."""
    return catalog.count_matching(product_filter), catalog.filter_vector_ids(product_filter)


def timed(fn, repeat: int = 20) -> float:
    """p50 milliseconds of `fn()`."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sql", action="store_true", help="also time the catalog's SQL")
    args = parser.parse_args()
    items = products(args.n, np.random.default_rng(0))
    before = rss_mb()
    started = time.perf_counter()
    bitmaps = FilterBitmaps("m")
    bitmaps.load(tqdm(items, desc="bitmaps", unit="item"))
    build_s = time.perf_counter() - started
    grown = rss_mb() - before
    held = bitmaps.memory_bytes()
    print(
        f"\n{args.n:,} items: built in {build_s:.1f} s; bitmaps + price arrays {held / 1e6:.1f} MB "
        f"({held / args.n:.1f} B/item); RSS +{grown:.0f} MB while building; load average "
        f"{os.getloadavg()[0]:.1f}; peak RSS {peak_rss_mb():.0f} MB\n"
    )
    filters = {
        "price 50%": ProductFilter(price_max=500.0),
        "price 5%": ProductFilter(price_max=50.0),
        "price 0.5%": ProductFilter(price_min=100.0, price_max=105.0),
        "price 0.05%": ProductFilter(price_min=100.0, price_max=100.5),
        "category c0 (22%)": ProductFilter(categories=("c0",)),
        "category c0 + color + price": ProductFilter(
            categories=("c0",), attributes={"color": ("red", "blue")}, price_max=300.0
        ),
        "brand b7 (0.1%)": ProductFilter(brands=("b7",)),
    }
    catalog = None
    if args.sql:
        catalog = SQLiteCatalog(Path(tempfile.mkdtemp(prefix="lookalike-bitmaps-")) / "c.db")
        for start in tqdm(range(0, args.n, 10_000), desc="catalog", unit="batch"):
            catalog.upsert(
                [
                    ProductWrite(p, np.ones(4, dtype=np.float32))
                    for p in items[start : start + 10_000]
                ]
            )
        bitmaps = FilterBitmaps.from_catalog(catalog, None)
    print("| filter | matching | bitmaps: count + ids p50 ms | catalog SQL: count + ids p50 ms |")
    print("|---|---|---|---|")
    for label, product_filter in filters.items():
        mine = timed(lambda f=product_filter: (bitmaps.count(f), bitmaps.vector_ids(f)))
        sql = "-"
        if catalog is not None:
            assert np.array_equal(
                bitmaps.vector_ids(product_filter), catalog.filter_vector_ids(product_filter)
            )
            sql = f"{timed(lambda f=product_filter: sql_answer(catalog, f), 5):.1f}"
        print(f"| {label} | {bitmaps.count(product_filter):,} | {mine:.2f} | {sql} |")


if __name__ == "__main__":
    main()
