"""Markdown tables from ``copylens bench run`` reports, side by side (the README's results tables).

    .venv/bin/python bench/report_table.py "SIFT only=/tmp/devrun-sift/report.json" "dual=/tmp/devrun-dual/report.json"
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    runs = []
    for arg in argv:
        label, _, path = arg.partition("=")
        runs.append((label, json.load(open(path, encoding="utf-8"))))
    heads = " | ".join(label for label, _ in runs)
    print(f"| overall | {heads} |\n|---|" + "---|" * len(runs))
    rows = [("μAP", lambda r: f"{r['metrics']['micro_ap']:.3f}"),
            ("recall@1", lambda r: f"{r['metrics']['recall_at_1']:.3f}"),
            ("recall at 90% precision", lambda r: f"{r['metrics']['recall_at_p90']:.3f}"),
            ("precision@1 (score ≥ 0.5)", lambda r: f"{r['metrics']['precision_at_1']:.3f}"),
            ("μAP photos", lambda r: f"{r['metrics']['per_content']['photo']['micro_ap']:.3f}"),
            ("μAP graphics", lambda r: f"{r['metrics']['per_content']['graphics']['micro_ap']:.3f}"),
            ("recall@1 photos", lambda r: f"{r['metrics']['per_content']['photo']['recall_at_1']:.3f}"),
            ("recall@1 graphics", lambda r: f"{r['metrics']['per_content']['graphics']['recall_at_1']:.3f}"),
            ("query latency p50 / p95 (ms)", lambda r: f"{r['latency_p50_ms']:.0f} / {r['latency_p95_ms']:.0f}"),
            ("index build, images/s (all steps)", lambda r: f"{r['build_images_per_s']:.1f}"),
            ("index size per reference (KB)", lambda r: f"{r['bytes_per_reference'] / 1024:.0f}"),
            ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:.0f}")]
    for name, fn in rows:
        print(f"| {name} | " + " | ".join(fn(r) for _, r in runs) + " |")
    edits = sorted(runs[0][1]["metrics"]["per_edit"])
    print(f"\n| recall@1 (μAP) by edit | {heads} |\n|---|" + "---|" * len(runs))
    for a in edits:
        cells = []
        for _, r in runs:
            m = r["metrics"]["per_edit"].get(a)
            cells.append(f"{m['recall_at_1']:.2f} ({m['micro_ap']:.2f})" if m else "-")
        n = runs[0][1]["metrics"]["per_edit"][a]["num_positive_queries"]
        print(f"| {a} ({n}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
