"""Measurements and the report of the scale benchmark (bench/scale.py): child-process steps, one row per N,
the Markdown table and the PNG of every figure against N (drawn with Pillow: no plotting library here)."""

from __future__ import annotations

import csv
import json
import resource
import sqlite3
import time
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

GOALS = {"ram_kb": 40.0, "p50_ms": 400.0, "build_ips": 25.0, "map_drop": 0.02}  # issue 12
KINDS = ("photo", "tuxpaint", "icons", "lineart", "wallpapers")


def _rss_mb() -> float:
    """This process's resident memory (after glibc returns freed heap pages, so it counts what is held)."""
    from copylens.core.index.local import _give_back_freed_memory

    _give_back_freed_memory()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def build_child(ref_dir: str, index: str) -> dict:
    """Build ``index`` from ``ref_dir`` with the shipped defaults (all cores, self-calibration)."""
    from copylens.core.index.build import build_index
    from copylens.core.progress import run_job

    t = time.monotonic()
    s = run_job(build_index(ref_dir, index))
    wall = time.monotonic() - t
    return {"added": s.added, "skipped": s.skipped, "duplicates": s.duplicates, "failed": len(s.failed),
            "failed_examples": s.failed[:5], "total_references": s.total_references, "summary_seconds": s.seconds,
            "wall_seconds": wall, "images_per_s": s.added / wall if wall > 0 else None, "peak_rss_mb": _peak_mb()}


def _faiss_bytes(index) -> int:
    import faiss

    if isinstance(index, faiss.IndexBinary):
        return int(faiss.serialize_index_binary(index).nbytes)
    return int(faiss.serialize_index(index).nbytes)


def ram_child(index: str) -> dict:
    """The search structures of an opened index: FAISS local and global indexes as loaded (their serialised
    size, which for these index kinds is their in-memory size up to a few headers), and this process's RSS
    before and after :meth:`Engine.open` (which also loads the neural descriptor's weights). Also what the
    build recorded about duplicates and near-identical pairs (PDQ within 16 bits)."""
    import torch  # noqa: F401  (imported before the baseline so that the delta is the index, not the library)

    from copylens.core.engine import Engine
    from copylens.core.index.layout import LOCAL_FAISS, read_manifest
    from copylens.core.index.local import LocalIndex

    # the local index's RAM as loaded (serialised size understates it for indexes with an id hash map):
    # loaded alone first, in this fresh process, and freed before the engine opens the index
    kind = read_manifest(Path(index))["local_index"]["kind"]
    r0 = _rss_mb()
    alone = LocalIndex.load(Path(index) / LOCAL_FAISS, kind)
    local_rss = _rss_mb() - r0
    descriptors = alone.ntotal
    del alone
    rss0 = _rss_mb()
    t = time.monotonic()
    eng = Engine.open(index)
    open_s = time.monotonic() - t
    rss1 = _rss_mb()
    local = _faiss_bytes(eng.local._index)
    glob = {g.name: _faiss_bytes(g.index._index) for g in eng.globals}
    n = eng.info.num_references
    eng.close()
    con = sqlite3.connect(f"file:{Path(index) / 'references.sqlite'}?mode=ro", uri=True)
    ids = dict(con.execute("SELECT row, reference_id FROM refs"))
    kps = {"distractor": [], "dev": []}
    for rid, k in con.execute("SELECT reference_id, num_keypoints FROM refs"):
        kps["distractor" if rid.startswith("scale/") else "dev"].append(k)
    near = Counter()
    for a, b in con.execute("SELECT row, other FROM near_identical WHERE row < other"):
        sides = sorted("distractor" if ids.get(r, "").startswith("scale/") else "dev" for r in (a, b))
        near["-".join(sides)] += 1
    dups = con.execute("SELECT COUNT(*) FROM duplicates").fetchone()[0]
    con.close()

    def median(v):
        return float(sorted(v)[len(v) // 2]) if v else None

    return {"references": n, "local_bytes": local, "global_bytes": glob, "faiss_bytes": local + sum(glob.values()),
            "descriptors": descriptors, "local_rss_mb": local_rss,
            "ram_bytes": max(local, local_rss * 2**20) + sum(glob.values()),
            "rss_before_open_mb": rss0, "rss_after_open_mb": rss1, "open_seconds": open_s,
            "median_keypoints": {k: median(v) for k, v in kps.items()}, "near_identical_pairs": dict(near),
            "duplicates": dups}


def distractor_matches(run_dir: Path, gt_path: Path, items: list[dict], threshold: float = 0.5) -> dict:
    """Predictions >= ``threshold`` naming a distractor: how many, for which queries, of which kinds."""
    from copylens.core.bench.metrics import read_ground_truth

    gt = {g.query_id: g for g in read_ground_truth(gt_path)}
    kind = {"scale/" + it["file"].rsplit(".", 1)[0]: it["kind"] for it in items}
    best: dict[str, tuple[str, float]] = {}
    hits = []
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            q, r, s = row["query_id"], row["reference_id"], float(row["score"])
            if s > best.get(q, ("", -1.0))[1]:
                best[q] = (r, s)
            if r in kind and s >= threshold:
                hits.append((q, r, s))
    top1 = [q for q, (r, s) in best.items() if r in kind and s >= threshold]
    return {"predictions": len(hits), "queries": len({q for q, _, _ in hits}), "top1_queries": len(top1),
            "top1_of_copies": sum(1 for q in top1 if gt[q].reference_id),
            "by_query_content": dict(Counter(gt[q].content for q, _, _ in hits)),
            "by_distractor_kind": dict(Counter(kind[r] for _, r, _ in hits)),
            "examples": sorted(hits, key=lambda h: -h[2])[:10]}


def collect_run(n: int, num_refs: int, build: dict, ram: dict, report: dict, items: list[dict], run_dir: Path) -> dict:
    m = report["metrics"]
    return {
        "n": n, "references": num_refs, "distractor_kinds": dict(Counter(it["kind"] for it in items)),
        "build": build, "ram": ram,
        "build_images_per_s": build["images_per_s"], "build_peak_rss_mb": build["peak_rss_mb"],
        # None when the build's CPU time is not known (a build resumed after an interruption: bench/README)
        "build_cpu_ms_per_image": (None if build.get("_cpu_seconds") is None
                                   else build["_cpu_seconds"] / max(1, build["added"]) * 1000),
        "query_cpu_ms_mean": report["_cpu_seconds"] / max(1, report["num_queries"]) * 1000,
        "loadavg": {"build": build["_loadavg_before_after"], "query": report["_loadavg_before_after"]},
        "ram_kb_per_reference": ram.get("ram_bytes", ram["faiss_bytes"]) / num_refs / 1024,
        "disk_kb_per_reference": report["bytes_per_reference"] / 1024, "index_bytes": report["index_bytes"],
        "query_p50_ms": report["latency_p50_ms"], "query_p95_ms": report["latency_p95_ms"],
        "query_peak_rss_mb": report["peak_rss_mb"], "queries": report["num_queries"],
        "failed_queries": len(report["failed_queries"]),
        "micro_ap": m["micro_ap"], "recall_at_1": m["recall_at_1"], "recall_at_p90": m["recall_at_p90"],
        "precision_at_1": m["precision_at_1"], "ece": m["ece"],
        "per_content": {k: {"micro_ap": v["micro_ap"], "recall_at_1": v["recall_at_1"], "ece": v.get("ece")}
                        for k, v in m["per_content"].items()},
        "distractor_matches": distractor_matches(run_dir, Path(report["bench_dir"]) / "ground_truth.csv", items),
        "run_dir": str(run_dir), "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


# ------------------------------------------------------------------------------------------ report

def table(rows: list[dict]) -> str:
    head = ["N distractors", "references", "build images/s", "build CPU ms/image", "build peak RSS (MB)", "RAM/ref search structures (KB)",
            "RSS after open (MB)", "disk/ref (KB)", "query p50 / p95 (ms)", "query CPU ms (mean)", "query peak RSS (MB)", "μAP", "recall@1",
            *(f"μAP / R@1 {k}" for k in KINDS), "queries with a distractor >= 0.5 (top-1)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pc = r["per_content"]
        dm = r["distractor_matches"]
        cells = [f"{r['n']:,}", f"{r['references']:,}", f"{r['build_images_per_s']:.1f}",
                 "n/a" if r.get("build_cpu_ms_per_image") is None else f"{r['build_cpu_ms_per_image']:.0f}",
                 f"{r['build_peak_rss_mb']:.0f}", f"{r['ram_kb_per_reference']:.1f}" + ("" if "local_rss_mb" in r["ram"] else "*"),
                 f"{r['ram']['rss_after_open_mb']:.0f}", f"{r['disk_kb_per_reference']:.0f}",
                 f"{r['query_p50_ms']:.0f} / {r['query_p95_ms']:.0f}", f"{r.get('query_cpu_ms_mean', float('nan')):.0f}",
                 f"{r['query_peak_rss_mb']:.0f}",
                 f"{r['micro_ap']:.3f}", f"{r['recall_at_1']:.3f}",
                 *(f"{pc[k]['micro_ap']:.3f} / {pc[k]['recall_at_1']:.3f}" if k in pc else "-" for k in KINDS),
                 f"{dm['queries']} ({dm['top1_queries']})"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


PANELS = [  # (title, [(label, getter)], goal line or None, goal is a floor)
    ("build images/s (all steps)", [("", lambda r: r["build_images_per_s"])], GOALS["build_ips"], True),
    ("peak RSS MB (build, query)", [("build", lambda r: r["build_peak_rss_mb"]),
                                    ("query", lambda r: r["query_peak_rss_mb"])], None, False),
    ("RAM per reference KB (FAISS)", [("", lambda r: r["ram_kb_per_reference"])], GOALS["ram_kb"], False),
    ("disk per reference KB", [("", lambda r: r["disk_kb_per_reference"])], None, False),
    ("query ms (p50, p95)", [("p50", lambda r: r["query_p50_ms"]), ("p95", lambda r: r["query_p95_ms"])],
     GOALS["p50_ms"], False),
    ("μAP overall and by kind", [("all", lambda r: r["micro_ap"])]
     + [(k, (lambda r, k=k: r["per_content"].get(k, {}).get("micro_ap"))) for k in KINDS], "map", True),
    ("recall@1 overall and by kind", [("all", lambda r: r["recall_at_1"])]
     + [(k, (lambda r, k=k: r["per_content"].get(k, {}).get("recall_at_1"))) for k in KINDS], None, False),
    ("queries matching a distractor >= 0.5", [("any rank", lambda r: r["distractor_matches"]["queries"]),
                                              ("top-1", lambda r: r["distractor_matches"]["top1_queries"])],
     None, False),
]
COLOURS = [(30, 90, 200), (220, 80, 40), (40, 160, 70), (150, 60, 170), (200, 160, 20), (20, 170, 190)]


def _font(size: int):
    path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # has μ; Pillow's own font does not
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


def _panel(rows: list[dict], title: str, series, goal, floor: bool, size=(420, 300)) -> Image.Image:
    w, h = size
    pad_l, pad_r, pad_t, pad_b = 56, 12, 28, 44
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = _font(11)
    if goal == "map":  # μAP within 0.02 of the dev references alone
        goal = rows[0]["micro_ap"] - GOALS["map_drop"] if rows and rows[0]["n"] == 0 else None
    xs = [r["n"] for r in rows]
    vals = [v for _, f in series for r in rows if (v := f(r)) is not None]
    if goal is not None:
        vals.append(goal)
    lo, hi = min(vals), max(vals)
    if title.startswith(("μAP", "recall")):
        lo, hi = min(lo, 0.8), 1.0
    else:
        lo = 0.0
    hi = hi + (hi - lo) * 0.08 or 1.0
    xmax = max(xs) or 1

    def pt(x, y):
        return (pad_l + x / xmax * (w - pad_l - pad_r), pad_t + (1 - (y - lo) / (hi - lo)) * (h - pad_t - pad_b))

    d.rectangle([pad_l, pad_t, w - pad_r, h - pad_b], outline=(0, 0, 0))
    for k in range(5):
        y = lo + (hi - lo) * k / 4
        d.line([pt(0, y), pt(xmax, y)], fill=(230, 230, 230))
        d.text((4, pt(0, y)[1] - 6), f"{y:,.0f}" if hi - lo > 20 else f"{y:.3g}", fill=(0, 0, 0), font=font)
    for x in xs:
        d.text((pt(x, lo)[0] - 10, h - pad_b + 4), f"{x // 1000}k" if x else "0", fill=(0, 0, 0), font=font)
    base = f"{rows[0]['references']:,} " if rows and rows[0]["n"] == 0 else ""
    d.text((pad_l, h - 18), f"N distractors (plus the dev benchmark's {base}references)", fill=(0, 0, 0), font=font)
    if goal is not None:
        gy = pt(0, goal)[1]
        for x0 in range(pad_l, w - pad_r, 10):
            d.line([(x0, gy), (min(x0 + 5, w - pad_r), gy)], fill=(200, 0, 0), width=2)
        d.text((w - pad_r - 110, gy - 14), f"goal {'>=' if floor else '<='} {goal:.3g}", fill=(200, 0, 0), font=font)
    for k, (label, f) in enumerate(series):
        c = COLOURS[k % len(COLOURS)]
        pts = [pt(r["n"], v) for r in rows if (v := f(r)) is not None]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for px, py in pts:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=c)
        if label:
            d.text((pad_l + 6 + 62 * (k % 6), pad_t + 4), label, fill=c, font=font)
    d.text((pad_l, 6), title, fill=(0, 0, 0), font=_font(13))
    return img


def plot(rows: list[dict], path: Path) -> Path:
    panels = [_panel(rows, t, s, g, f) for t, s, g, f in PANELS]
    cols = 4
    pw, ph = panels[0].size
    sheet = Image.new("RGB", (cols * pw, -(-len(panels) // cols) * ph), "white")
    for k, p in enumerate(panels):
        sheet.paste(p, ((k % cols) * pw, (k // cols) * ph))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def report_main(args) -> None:
    res = json.loads(Path(args.results).read_text(encoding="utf-8"))
    rows = [res["rows"][k] for k in sorted(res["rows"], key=int)]
    print(table(rows))
    if rows and rows[0]["n"] == 0:
        base = rows[0]["micro_ap"]
        for r in rows[1:]:
            print(f"N={r['n']:,}: μAP {r['micro_ap'] - base:+.3f} against N=0 (goal within {GOALS['map_drop']})")
    print(f"plot: {plot(rows, Path(args.plot))}")
