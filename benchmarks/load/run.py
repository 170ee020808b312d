"""Load tests through HTTP: a real `lookalike serve` (default settings, 1 worker) on a copy
of a data dir, locust on the same machine, every query unique (or the cached variant).

    lookalike demo --no-serve --dir /work/demo-data      # once: catalog + model
    # closed loop: N clients, each sends its next request when the last returns
    PYTHONPATH=src:. python benchmarks/load/run.py closed --demo /work/demo-data \
        --scenarios text,image,similar --clients 1,8 --seconds 20
    # open loop: offered rate stepped up; the highest rate with p99 <= 200 ms, and a plot
    PYTHONPATH=src:. python benchmarks/load/run.py open --demo /work/demo-data \
        --scenarios similar,text --rates 10,20,40,80 --seconds 15
    # the raw ceiling of a text GET (wrk; cached, and unique queries through a Lua script)
    PYTHONPATH=src:. python benchmarks/load/run.py wrk --demo /work/demo-data
    # where a scenario's time goes in the server: py-spy flamegraph + top functions
    PYTHONPATH=src:. python benchmarks/load/run.py profile --demo /work/demo-data \
        --scenarios text --clients 8 --seconds 24

`--source REV` (repeatable) runs the same cells with the server code of git revision REV
too (the runner's own code drives both), so before/after comparisons come from one run.
`--env NAME=VALUE` (repeatable) adds a setting to the server's environment, e.g.
`--env LOOKALIKE_SEARCH_THREADS=2`. Each cell reports `uptime`'s 1-minute load average
before it started: the machine is shared, read figures from busy cells with care.

The server's per-stage histograms (`lookalike_search_stage_seconds`, where the server has
them) are scraped before and after each cell; the table shows each stage's mean.
Results are appended to benchmarks/results/load.jsonl; `plot` redraws the latency-vs-load
plot from it. Every server and locust process is stopped when a cell ends, on errors too.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from tests.support.servers import free_port
from tests.support.servers import stop_process as stop

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results" / "load.jsonl"
PLOT = HERE / "latency_vs_load.png"
LOCUSTFILE = HERE / "locustfile.py"
SCENARIOS = {
    "text": "TextUser",
    "image": "ImageUser",
    "similar": "SimilarUser",
    "filtered": "FilteredUser",
    "hybrid": "HybridUser",
    "mix": "MixUser",
}
P99_GOAL_MS = 200.0
OPEN_LOOP_USERS = 32  # enough users that the offered rate does not wait on replies
STAGE = re.compile(
    r'^lookalike_search_stage_seconds_(sum|count)\{stage="([^"]+)",type="([^"]+)"\} (\S+)$'
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    write_key: str
    catalog_file: Path
    label: str


@dataclass
class Cell:
    """One locust run's figures."""

    scenario: str
    server: str
    clients: int
    offered_qps: float | None
    cached: bool
    seconds: float
    load_before: float
    requests: int = 0
    failures: int = 0
    qps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    by_name: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    stages_ms: dict[str, float] = field(default_factory=dict)


# --- the server ----------------------------------------------------------------------------
def source_at(revision: str, directory: Path) -> Path:
    """The `src` folder of git revision `revision`, unpacked under `directory`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    target = directory / revision.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def copy_data(data_dir: Path, work: Path) -> Path:
    """A private copy of the data dir: searches are logged and writes land in it."""
    target = work / "data"
    shutil.copytree(data_dir, target, ignore=shutil.ignore_patterns("reports"))
    return target


def catalog_file(data_dir: Path, work: Path) -> Path:
    """Product ids, categories and the price range for the scenarios (read-only SQL)."""
    uri = f"file:{data_dir / 'catalog.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM products LIMIT 200000")]
        categories = [
            row[0]
            for row in db.execute("SELECT DISTINCT category FROM products WHERE category != ''")
        ]
        (price_max,) = db.execute("SELECT COALESCE(MAX(price), 100) FROM products").fetchone()
    path = work / "catalog.json"
    path.write_text(json.dumps({"ids": ids, "categories": categories, "price_max": price_max}))
    return path


def server_env(src: Path, model: Path | None, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(PYTHONPATH=str(src), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if model is not None:
        env["LOOKALIKE_MODEL_CHECKPOINT"] = str(model)
    env.update(extra)
    return env


def make_write_key(data_dir: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "lookalike.cli", "keys", "create", "load-test"),
            *("--scope", "write", "--data-dir", str(data_dir)),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def running_server(
    data_dir: Path, model: Path | None, src: Path, label: str, extra_env: dict[str, str]
) -> Iterator[Server]:
    """`lookalike serve` (default settings but `extra_env`) on a copy of `data_dir`,
    stopped on leaving, whatever happened."""
    with tempfile.TemporaryDirectory(prefix="lookalike-load-") as tmp:
        work = Path(tmp)
        data = copy_data(data_dir, work)
        if model is not None and model.is_dir():
            # A private copy: a server caches exports beside its model (ONNX Runtime), and
            # older code counts every file there into the model's id.
            model = Path(shutil.copytree(model, work / "model"))
        env = server_env(src, model, extra_env)
        key = make_write_key(data, env)
        port = free_port()
        log = work / "server.log"
        command = [sys.executable, "-m", "lookalike.cli", "serve", "--data-dir", str(data)]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, log)
            yield Server(url, process, log, key, catalog_file(data, work), label)
        finally:
            stop(process)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready in {timeout_s} s")


# --- locust ----------------------------------------------------------------------------------
def run_locust(
    server: Server,
    scenarios: list[str],
    clients: int,
    seconds: float,
    *,
    cached: bool = False,
    rate_per_user: float = 0.0,
    spawn_rate: float | None = None,
    work: Path,
) -> tuple[int, Path]:
    """Locust headless for `seconds`; returns its exit code and its CSV prefix. Users start
    at `spawn_rate` a second (default: all at once)."""
    prefix = work / "locust"
    env = {
        **os.environ,
        "LOAD_CATALOG": str(server.catalog_file),
        "LOAD_CACHED": "1" if cached else "0",
        "LOAD_RATE": str(rate_per_user),
        "LOAD_WRITE_KEY": server.write_key,
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        server.url,
        "-u",
        str(clients),
        "-r",
        f"{spawn_rate if spawn_rate else max(clients, 1):g}",
        "-t",
        f"{seconds:g}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
        *[SCENARIOS[s] for s in scenarios],
    ]
    with open(work / "locust.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        code = process.wait(timeout=seconds + 60)
    finally:
        stop(process, grace_s=5)
    return code, prefix


def read_stats(prefix: Path) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Per request name (and `Aggregated`): requests, failures, qps, percentiles in ms; and
    failures counted by their error text (the HTTP status)."""
    rows: dict[str, dict[str, float]] = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "qps": float(row["Requests/s"]),
                "p50_ms": float(row["50%"] or 0),
                "p90_ms": float(row["90%"] or 0),
                "p99_ms": float(row["99%"] or 0),
                "mean_ms": float(row["Average Response Time"] or 0),
            }
    statuses: dict[str, int] = {}
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        with open(failures, newline="") as handle:
            for row in csv.DictReader(handle):
                error = row["Error"]
                statuses[error[:80]] = statuses.get(error[:80], 0) + int(row["Occurrences"])
    return rows, statuses


def stage_totals(url: str) -> dict[tuple[str, str], list[float]]:
    """(kind, stage) -> [seconds sum, count] from the server's per-stage histograms."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    totals: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        match = STAGE.match(line)
        if match:
            part, stage, kind, value = match.groups()
            entry = totals.setdefault((kind, stage), [0.0, 0.0])
            entry[0 if part == "sum" else 1] = float(value)
    return totals


def stage_means(
    before: dict[tuple[str, str], list[float]], after: dict[tuple[str, str], list[float]]
) -> dict[str, float]:
    """'kind/stage' -> mean ms over the requests of a cell."""
    means = {}
    for key, (total, count) in after.items():
        old_total, old_count = before.get(key, [0.0, 0.0])
        if count > old_count:
            means[f"{key[0]}/{key[1]}"] = round((total - old_total) / (count - old_count) * 1e3, 2)
    return means


def run_cell(
    server: Server,
    scenarios: list[str],
    clients: int,
    seconds: float,
    *,
    cached: bool,
    offered_qps: float | None = None,
) -> Cell:
    rate = (offered_qps / clients) if offered_qps else 0.0
    cell = Cell(
        "+".join(scenarios),
        server.label,
        clients,
        offered_qps,
        cached,
        seconds,
        round(os.getloadavg()[0], 2),
    )
    with tempfile.TemporaryDirectory(prefix="lookalike-locust-") as tmp:
        before = stage_totals(server.url)
        # Open loop: users start at the offered rate (each sends its first request when it
        # starts), so the arrivals keep that rate from the first second instead of all
        # users firing at once.
        code, prefix = run_locust(
            server,
            scenarios,
            clients,
            seconds,
            cached=cached,
            rate_per_user=rate,
            spawn_rate=offered_qps,
            work=Path(tmp),
        )
        after = stage_totals(server.url)
        if not Path(f"{prefix}_stats.csv").exists():
            raise RuntimeError(f"locust wrote no stats:\n{(Path(tmp) / 'locust.log').read_text()}")
        rows, cell.statuses = read_stats(prefix)
    total = rows["Aggregated"]
    cell.requests, cell.failures = int(total["requests"]), int(total["failures"])
    cell.qps, cell.p50_ms = round(total["qps"], 1), total["p50_ms"]
    cell.p90_ms, cell.p99_ms = total["p90_ms"], total["p99_ms"]
    cell.by_name = {name: row for name, row in rows.items() if name != "Aggregated"}
    cell.stages_ms = stage_means(before, after)
    if any("code=5" in error for error in cell.statuses):
        # A 5xx is a bug to chase: show what the server said about it.
        print(f"server errors; the log's end:\n{server.log.read_text()[-6000:]}", file=sys.stderr)
    del code  # locust exits 1 when any request failed: the failures are in the cell
    print(f"  {describe(cell)}", file=sys.stderr)
    return cell


def describe(cell: Cell) -> str:
    offered = f" offered {cell.offered_qps:g}/s" if cell.offered_qps else ""
    cached = " cached" if cell.cached else ""
    return (
        f"{cell.server} {cell.scenario}{cached} x{cell.clients}{offered}: {cell.qps} QPS, "
        f"p50 {cell.p50_ms:g} ms, p99 {cell.p99_ms:g} ms, {cell.failures} failed "
        f"(load {cell.load_before})"
    )


def warm_up(server: Server, scenarios: list[str], seconds: float) -> None:
    """A few seconds of traffic first: lazy loads, first-call allocations, page cache."""
    with tempfile.TemporaryDirectory(prefix="lookalike-locust-") as tmp:
        run_locust(server, scenarios, 2, seconds, work=Path(tmp))


def wait_quiet(max_load: float, patience_s: float) -> None:
    """Wait (up to `patience_s`) for the 1-minute load average to fall below `max_load`."""
    deadline = time.monotonic() + patience_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)


# --- commands ---------------------------------------------------------------------------
def servers(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, Path]]:
    """(label, src folder): this checkout's code, then each --source revision's."""
    yield "this", REPO / "src"
    for revision in args.source:
        yield revision, source_at(revision, work)


def extra_env(args: argparse.Namespace) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in args.env]
    return {name: value for name, value in pairs}


def command_cells(args: argparse.Namespace) -> list[Cell]:
    """Every server (this code, each --source) runs at once, idle but one; each cell runs on
    every server back to back, so a busier minute of the shared machine falls on both
    sides of a comparison, not on one."""
    cells: list[Cell] = []
    data, model = data_and_model(args)
    suffix = f" {' '.join(args.env)}" if args.env else ""
    with (
        tempfile.TemporaryDirectory(prefix="lookalike-src-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        started = [
            stack.enter_context(running_server(data, model, src, label + suffix, extra_env(args)))
            for label, src in servers(args, Path(tmp))
        ]
        for scenario in args.scenarios:
            for server in started:
                warm_up(server, [scenario], args.warmup)
            for cached in [False, True] if args.cached else [False]:
                steps = args.clients if args.command == "closed" else args.rates
                past_knee: set[str] = set()
                for step in steps:
                    for server in started:
                        if server.label in past_knee:
                            continue
                        wait_quiet(args.max_load, args.patience)
                        if args.command == "closed":
                            cell = run_cell(
                                server, [scenario], int(step), args.seconds, cached=cached
                            )
                        else:
                            cell = run_cell(
                                server,
                                [scenario],
                                OPEN_LOOP_USERS,
                                args.seconds,
                                cached=cached,
                                offered_qps=step,
                            )
                            if cell.p99_ms > 4 * P99_GOAL_MS:
                                past_knee.add(server.label)  # higher rates say nothing new
                        cells.append(cell)
    return cells


def data_and_model(args: argparse.Namespace) -> tuple[Path, Path | None]:
    if args.demo is not None:
        return args.demo / "lookalike-data", args.demo / "model"
    if args.data_dir is None:
        raise SystemExit("give --demo DIR or --data-dir DIR")
    return args.data_dir, args.model


def ceilings(cells: list[Cell]) -> dict[str, float | None]:
    """Per scenario (and server, cached): the highest achieved QPS of an open-loop step
    whose p99 <= 200 ms, with no failures, that kept up with its offered rate (>= 90%)."""
    best: dict[str, float | None] = {}
    for cell in cells:
        if cell.offered_qps is None:
            continue
        key = f"{cell.server} {cell.scenario}{' cached' if cell.cached else ''}"
        best.setdefault(key, None)
        kept_up = cell.qps >= 0.9 * cell.offered_qps
        if cell.p99_ms <= P99_GOAL_MS and not cell.failures and kept_up:
            best[key] = max(best[key] or 0.0, cell.qps)
    return best


def markdown(cells: list[Cell]) -> str:
    lines = [
        "| server | scenario | cached | clients | offered/s | QPS | p50 ms | p90 ms | p99 ms "
        "| failed | load before | mean ms per stage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        kinds = {key.split("/", 1)[0] for key in c.stages_ms}
        stages = ", ".join(
            f"{k if len(kinds) > 1 else k.split('/', 1)[1]} {v:g}"
            for k, v in sorted(c.stages_ms.items())
        )
        failed = f"{c.failures} {c.statuses}" if c.failures else "0"
        lines.append(
            f"| {c.server} | {c.scenario} | {'yes' if c.cached else 'no'} | {c.clients} "
            f"| {c.offered_qps or '-'} | {c.qps} | {c.p50_ms:g} | {c.p90_ms:g} | {c.p99_ms:g} "
            f"| {failed} | {c.load_before} | {stages or '-'} |"
        )
    best = ceilings(cells)
    if best:
        lines += ["", "| open loop | highest QPS with p99 <= 200 ms |", "|---|---|"]
        for key, value in best.items():
            lines.append(f"| {key} | {value if value is not None else 'none of the steps'} |")
    return "\n".join(lines)


def save(cells: list[Cell], args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as handle:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # "this" is the checkout's code: which commit, and whether it had local changes.
        head = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        for cell in cells:
            row = {"at": stamp, "command": args.command, "this": head, **cell.__dict__}
            handle.write(json.dumps(row) + "\n")


def plot(results: Path, out: Path, since: str | None = None) -> None:
    """p99 (and p50) against achieved QPS per open-loop series, from the results file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict]] = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        if row.get("offered_qps") is None or (since and row["at"] < since):
            continue
        label = f"{row['server']} {row['scenario']}{' cached' if row['cached'] else ''}"
        series.setdefault(label, []).append(row)
    figure, axis = plt.subplots(figsize=(8, 5))
    for label, rows in sorted(series.items()):
        rows.sort(key=lambda r: r["offered_qps"])
        qps = [r["qps"] for r in rows]
        line = axis.plot(qps, [r["p99_ms"] for r in rows], marker="o", label=f"{label} p99")
        colour = line[0].get_color()
        p50 = [r["p50_ms"] for r in rows]
        axis.plot(qps, p50, ls=":", marker="x", color=colour, label=f"{label} p50")
    axis.axhline(P99_GOAL_MS, color="grey", ls="--", lw=1, label="200 ms")
    axis.set_xlabel("achieved QPS (open loop, offered rate stepped up)")
    axis.set_ylabel("latency, ms (log)")
    axis.set_yscale("log")
    axis.set_title("Lookalike through HTTP: latency vs load (1 worker, 2 shared cores)")
    axis.legend(fontsize=7)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"plot: {out}", file=sys.stderr)


def command_profile(args: argparse.Namespace) -> None:
    """py-spy on the server while one scenario runs (the first of --scenarios, the first
    --clients count): a flamegraph SVG and the functions with the most samples, own time
    and with callees (collapsed stacks), to stdout as markdown."""
    # pip puts py-spy beside this interpreter, which need not be on PATH (a virtualenv).
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    data, model = data_and_model(args)
    scenario, clients = args.scenarios[0], args.clients[0]
    svg = HERE / f"profile_{scenario}_{clients}.svg"
    with running_server(data, model, REPO / "src", "this", extra_env(args)) as server:
        warm_up(server, [scenario], args.warmup)
        with tempfile.TemporaryDirectory(prefix="lookalike-profile-") as tmp:
            work = Path(tmp)
            seconds = args.seconds
            results: dict[str, Any] = {}

            def drive() -> None:
                results["code"] = run_locust(server, [scenario], clients, seconds, work=work)

            thread = threading.Thread(target=drive)
            thread.start()
            time.sleep(2)  # past locust's start-up
            span = max(seconds - 4, 2)
            pid = str(server.process.pid)
            raw = work / "stacks.txt"
            record = [py_spy, "record", "--pid", pid, "--duration", f"{span / 2:.0f}"]
            subprocess.run([*record, "--format", "raw", "-o", str(raw)], check=True)
            subprocess.run([*record, "--format", "flamegraph", "-o", str(svg)], check=True)
            thread.join()
            own, total, samples = top_functions(raw.read_text())
    print(f"py-spy, {scenario} x{clients}: {samples} samples; flamegraph {svg.name}")
    print("\n| function (file:line) | own % | with callees % |\n|---|---|---|")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name} | {100 * count / samples:.1f} | {100 * total[name] / samples:.1f} |")


def top_functions(collapsed: str) -> tuple[dict[str, int], dict[str, int], int]:
    """From py-spy's collapsed stacks: samples per function where it ran itself (the leaf),
    samples per function anywhere on the stack, and the total."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [re.sub(r" \((.*/)?", " (", frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    return own, total, max(samples, 1)


WRK_LUA = HERE / "unique_text.lua"


def command_wrk(args: argparse.Namespace) -> list[dict]:
    """wrk against GET /v1/search/text: one fixed query (the result cache answers: the
    ceiling of the HTTP stack), and unique queries (the Lua script numbers them)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    data, model = data_and_model(args)
    rows = []
    with running_server(data, model, REPO / "src", "this", extra_env(args)) as server:
        for label, extra in (("cached", []), ("unique", ["-s", str(WRK_LUA)])):
            url = f"{server.url}/v1/search/text?q=red+dress"
            for connections in args.clients:
                wait_quiet(args.max_load, args.patience)
                load = round(os.getloadavg()[0], 2)
                command = ["wrk", "-t1", f"-c{connections}", f"-d{args.seconds:g}s", "--latency"]
                out = subprocess.run(
                    [*command, *extra, url],
                    capture_output=True,
                    text=True,
                    timeout=args.seconds + 60,
                ).stdout
                row = {"query": label, "connections": connections, "load_before": load}
                row.update(parse_wrk(out))
                rows.append(row)
                print(f"  wrk {row}", file=sys.stderr)
    return rows


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    figures: dict[str, float] = {}
    for name, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        found = re.search(rf"^\s+{re.escape(name)}\s+(\S+)$", out, re.M)
        if found:
            figures[key] = ms(found.group(1))
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    figures["qps"] = float(found.group(1)) if found else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = int(errors.group(1)) if errors else 0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["closed", "open", "wrk", "plot", "profile"])
    parser.add_argument("--demo", type=Path, help="a `lookalike demo` folder")
    parser.add_argument("--data-dir", type=Path, help="a data dir (instead of --demo)")
    parser.add_argument("--model", type=Path, help="its model checkpoint (with --data-dir)")
    parser.add_argument("--scenarios", default="text,image,similar")
    parser.add_argument("--clients", default="1,8", help="closed loop users / wrk connections")
    parser.add_argument("--rates", default="10,20,40,80", help="open loop: offered QPS steps")
    parser.add_argument("--seconds", type=float, default=20.0, help="per cell")
    parser.add_argument("--warmup", type=float, default=5.0, help="per scenario and server")
    parser.add_argument("--cached", action="store_true", help="also the cached variant")
    parser.add_argument("--source", action="append", default=[], metavar="REV")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a quieter machine")
    parser.add_argument("--patience", type=float, default=60.0, help="...for at most this long")
    parser.add_argument("--since", help="plot: only rows at or after this UTC time stamp")
    parser.add_argument("--top", type=int, default=15, help="profile: functions listed")
    args = parser.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}")
    args.clients = [int(n) for n in args.clients.split(",")]
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.command == "plot":
        plot(RESULTS, PLOT, args.since)
        return
    if args.command == "profile":
        command_profile(args)
        return
    if args.command == "wrk":
        rows = command_wrk(args)
        print("| query | connections | QPS | p50 ms | p99 ms | non-2xx | load before |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['query']} | {r['connections']} | {r['qps']:.1f} | {r.get('p50_ms', 0):.1f} "
                f"| {r.get('p99_ms', 0):.1f} | {r['non_2xx']} | {r['load_before']} |"
            )
        return
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cells = command_cells(args)
    save(cells, args)
    print(markdown(cells))
    if args.command == "open":
        plot(RESULTS, PLOT, started)


if __name__ == "__main__":
    main()
