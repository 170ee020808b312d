"""A `lookalike eval` report as JSON lines: one row per model and baseline of the run.

`lookalike eval` writes its full report (per-class figures, per-title ranks) to
`<data dir>/reports/eval-*.json`; this keeps its headline figures, one flat row per column
of the run (the model, random init, raw pixels, BM25), each row naming the run it came
from, so benchmarks/results/ holds what the docs' tables were pasted from:

    PYTHONPATH=src python benchmarks/eval_rows.py run-data/openclipart-data/reports/eval-*.json \\
        --dataset openclipart --command "lookalike eval ..." --seconds build=700 eval=300 \\
        --out benchmarks/results/openclipart_eval.jsonl \\
        --titles-out benchmarks/results/openclipart_titles.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# (row key, path into a model's results); a figure the model lacks is left out of its row.
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("titles_R@1", ("titles", "all", "R@1")),
    ("titles_R@5", ("titles", "all", "R@5")),
    ("titles_R@10", ("titles", "all", "R@10")),
    ("titles_MRR", ("titles", "all", "MRR")),
    ("distinct_titles_R@10", ("titles", "distinct", "R@10")),
    ("distinct_titles_MRR", ("titles", "distinct", "MRR")),
    ("no_keyword_match_R@10", ("titles", "no keyword match", "R@10")),
    ("gallery_P@10", ("held_out_vs_gallery", "P@10")),
    ("gallery_macro_P@10", ("held_out_vs_gallery", "macro P@10")),
    ("gallery_1nn", ("held_out_vs_gallery", "1-NN accuracy")),
    ("held_out_P@10", ("image_to_image", "P@10")),
    ("prompts_P@10", ("class_prompts", "P@10")),
)


def rows(report: dict[str, Any], dataset: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per column of the report (same split, same run)."""
    out = []
    for name, results in report["results"].items():
        row: dict[str, Any] = {"dataset": dataset, "column": name}
        for key, path in FIGURES:
            value: Any = results
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                row[key] = value
        titles = (results.get("titles") or {}).get("all") or {}
        if "queries" in titles:
            row["title_queries"] = titles["queries"]
        row.update(
            model=report["model"]["model_id"],
            split=report["split"],
            items=report["items"],
            gallery_items=(report.get("gallery") or {}).get("items"),
            created=report["created"],
            eval_s=report["seconds"],
            **extra,
        )
        out.append(row)
    return out


def title_rows(report: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """One row per title query: each column's rank of the query's own item (None: not in
    its top `depth`), so which titles each side finds can be checked."""
    titles = report.get("title_queries") or {}
    ranks = titles.get("ranks", {})
    return [
        {"dataset": dataset, "title": query, **{name: ranks[name][i] for name in ranks}}
        for i, query in enumerate(titles.get("queries", []))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a `lookalike eval` report (JSON)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--command", default="", help="the command that made the run")
    parser.add_argument(
        "--seconds", nargs="*", default=[], help="STEP=SECONDS wall times of the run's steps"
    )
    parser.add_argument("--load", type=float, help="the machine's load average during it")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append to")
    parser.add_argument(
        "--titles-out", type=Path, help="JSON lines file for the per-title ranks (rewritten)"
    )
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    extra: dict[str, Any] = {"command": args.command} if args.command else {}
    for entry in args.seconds:
        step, _, seconds = entry.partition("=")
        extra[f"{step}_s"] = float(seconds)
    if args.load is not None:
        extra["load"] = args.load
    lines = [json.dumps(row) for row in rows(report, args.dataset, extra)]
    with args.out.open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    print("\n".join(lines))
    if args.titles_out:
        ranks = [json.dumps(row, ensure_ascii=False) for row in title_rows(report, args.dataset)]
        args.titles_out.write_text("".join(line + "\n" for line in ranks), encoding="utf-8")


if __name__ == "__main__":
    main()
