"""A soak: one `lookalike serve` under a steady offered rate for many minutes.

The load issue's last goal: at 80% of the measured ceiling for 10 minutes, no 5xx, and the
server's resident memory at minute 10 within 5% of minute 2 (a leak shows as a slope).
Each minute is one open-loop locust cell at the offered rate (the `mix` scenario by
default: every query kind plus 5% writes with a write key); after it the server's RSS
(its whole process tree, from /proc) is sampled. Locust restarts between minutes (about
a second without traffic), which a leak does not mind.

    PYTHONPATH=src:. python benchmarks/load/soak.py --demo /work/demo-data \
        --rate 40 --minutes 10 --scenarios mix

Beside RSS, each minute reads what the in-process caches hold (`lookalike_cache_bytes`
from /metrics): query embeddings and results fill towards their bound (`cache_max_bytes`
each) by design, for longer than ten minutes at rates where every query is new. RSS less
that is the column a leak shows in; both drifts are printed.

Prints a table per minute and the verdict; rows append to benchmarks/results/soak.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import httpx
from benchmarks.load.run import (
    OPEN_LOOP_USERS,
    REPO,
    data_and_model,
    run_cell,
    running_server,
    warm_up,
)

RESULTS = REPO / "benchmarks" / "results" / "soak.jsonl"
RSS_DRIFT = 0.05  # the goal: minute 10 within 5% of minute 2


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and every descendant (worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        current = todo.pop()
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * page
        except OSError:
            continue
        todo.extend(children.get(current, []))
    return total


def cache_bytes(url: str) -> int:
    """What the server's in-process caches hold now (0 where it does not say)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    sizes = re.findall(r"^lookalike_cache_bytes\{[^}]*\} (\S+)$", text, re.M)
    return int(sum(float(v) for v in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, help="a `lookalike demo` folder")
    parser.add_argument("--data-dir", type=Path, help="a data dir (instead of --demo)")
    parser.add_argument("--model", type=Path, help="its model checkpoint (with --data-dir)")
    parser.add_argument("--scenarios", default="mix")
    parser.add_argument("--rate", type=float, required=True, help="offered QPS")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    data, model = data_and_model(args)
    scenarios = [s for s in args.scenarios.split(",") if s]
    env = dict(item.split("=", 1) for item in args.env)
    rows = []
    with running_server(data, model, REPO / "src", "this", env) as server:
        warm_up(server, scenarios, args.warmup)
        for minute in range(1, args.minutes + 1):
            cell = run_cell(
                server, scenarios, OPEN_LOOP_USERS, 60, cached=False, offered_qps=args.rate
            )
            errors = sum(n for status, n in cell.statuses.items() if "code=5" in status)
            row = {
                "minute": minute,
                "offered_qps": args.rate,
                "qps": cell.qps,
                "p50_ms": cell.p50_ms,
                "p99_ms": cell.p99_ms,
                "requests": cell.requests,
                "failures": cell.failures,
                "server_errors": errors,
                "statuses": cell.statuses,
                "rss_mib": round(tree_rss_bytes(server.process.pid) / 2**20, 1),
                "cache_mib": round(cache_bytes(server.url) / 2**20, 1),
                "load": cell.load_before,
                "scenario": "+".join(scenarios),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            rows.append(row)
            with RESULTS.open("a") as out:
                out.write(json.dumps(row) + "\n")
    print(
        "| minute | QPS (offered) | p50 / p99 ms | 5xx | other failures | RSS MiB "
        "| caches MiB | RSS less caches MiB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['minute']} | {r['qps']} ({r['offered_qps']:g}) | {r['p50_ms']:g} / "
            f"{r['p99_ms']:g} | {r['server_errors']} | {r['failures'] - r['server_errors']} | "
            f"{r['rss_mib']} | {r['cache_mib']} | {r['rss_mib'] - r['cache_mib']:.1f} | "
            f"{r['load']} |"
        )
    if len(rows) >= 2:
        first, last = rows[min(1, len(rows) - 1)], rows[-1]  # minute 2: past warm-up growth
        drift = (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"]
        own = [r["rss_mib"] - r["cache_mib"] for r in (first, last)]
        own_drift = (own[1] - own[0]) / own[0]
        errors = sum(r["server_errors"] for r in rows)
        verdict = "met" if errors == 0 and abs(drift) <= RSS_DRIFT else "NOT met"
        print(
            f"RSS minute {last['minute']} vs minute 2: {drift:+.1%} ({own_drift:+.1%} less "
            f"the caches); server errors: {errors}; goal (no 5xx, drift within "
            f"{RSS_DRIFT:.0%}): {verdict}"
        )


if __name__ == "__main__":
    main()
