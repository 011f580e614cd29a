"""Run a benchmark folder (made by :mod:`copylens.core.bench.make`) end to end and measure it.

Steps: build the index of ``DIR/references`` (or reuse a complete one), query every image of
``DIR/queries`` with :meth:`Engine.search`, write ``predictions.csv`` (``query_id,reference_id,score``,
every returned match) and ``report.json`` into a run folder, and score them with
:mod:`copylens.core.bench.metrics`. Reported costs: index build rate, per-query wall-clock latency (decode
to result, p50 / p95), peak resident memory of this process, index size on disk and per reference. The
report also names the Python and library releases it ran with (:mod:`copylens.core.releases`).
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import (
    Metrics,
    Prediction,
    calibration,
    evaluate,
    format_table,
    read_ground_truth,
    write_predictions,
)
from copylens.core.bench.plots import reliability_diagrams
from copylens.core.errors import CopyLensError, ImageLoadError
from copylens.core.fileio import write_atomic
from copylens.core.imageio import scan_images
from copylens.core.progress import Job, Progress, bounded_map, run_job
from copylens.core.releases import releases

DECISION_THRESHOLD = 0.5  # engine scores are calibrated probabilities: "is a copy" when >= 0.5


@dataclass(frozen=True)
class RunReport:
    metrics: Metrics
    bench_dir: str
    index_dir: str
    run_dir: str
    num_references: int
    index_reused: bool
    build_seconds: float | None  # None when the index was reused
    build_images_per_s: float | None
    num_queries: int
    query_seconds: float  # wall clock for all queries
    queries_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    peak_rss_mb: float  # this process, since it started
    index_bytes: int
    bytes_per_reference: float
    failed_queries: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    build_failed: list[tuple[str, str]] = field(default_factory=list)
    unseen_content: list[str] = field(default_factory=list)  # content kinds kept out of all tuning
    reliability_plots: list[str] = field(default_factory=list)  # PNGs: overall and per content kind
    environment: dict[str, str] = field(default_factory=releases)  # Python and library releases

    def to_dict(self) -> dict:
        d = asdict(self)
        d["metrics"] = self.metrics.to_dict()
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _open_if_complete(index_dir: Path, num_refs: int):
    """An open Engine on ``index_dir`` if it already indexes ``num_refs`` references, else ``None``."""
    from copylens.core.engine import Engine

    try:
        eng = Engine.open(index_dir)
    except (CopyLensError, OSError, KeyError, ValueError):
        return None
    if eng.info.num_references == num_refs:
        return eng
    eng.close()
    return None


def run_benchmark(bench_dir: str | Path, index_dir: str | Path | None = None, run_dir: str | Path | None = None,
                  workers: int | None = None, query_threads: int = 1, top_k: int = 10,
                  threshold: float | None = DECISION_THRESHOLD, calibrate: bool = True,
                  global_descriptors: Sequence[str] | None = None, build: bool = True) -> Job[RunReport]:
    """Generator job: index, query and score the benchmark in ``bench_dir``.

    ``index_dir`` defaults to ``bench_dir/index``; a complete index there is reused. ``run_dir`` defaults
    to ``bench_dir/runs/<date-time>``. ``workers`` sets the index build threads (default: all cores);
    ``query_threads`` the queries run at once (default 1, so latency is measured as a user meets it).
    ``threshold`` is the score at which the decision metrics (precision@1, accuracy@1, MAP@5) count a
    prediction; ``calibrate`` and ``global_descriptors`` (default: the index default) are passed to the
    index build. ``build=False`` queries ``index_dir`` as it is, whatever references it holds (an index
    built elsewhere, e.g. over the benchmark's references plus scale distractors), and never builds.
    """
    from copylens.core.engine import Engine
    from copylens.core.index.build import build_index

    bench = Path(bench_dir)
    ref_dir, q_dir, gt_path = bench / "references", bench / "queries", bench / "ground_truth.csv"
    for p in (ref_dir, q_dir, gt_path):
        if not p.exists():
            raise CopyLensError(f"{bench}: not a benchmark folder ({p.name} is missing)")
    index = Path(index_dir) if index_dir is not None else bench / "index"
    out = Path(run_dir) if run_dir is not None else bench / "runs" / time.strftime("%Y%m%d-%H%M%S")
    ground_truth = read_ground_truth(gt_path)
    num_refs = len(scan_images(ref_dir))

    eng = _open_if_complete(index, num_refs) if build else Engine.open(index)
    reused = eng is not None
    build_seconds = build_rate = None
    build_failed: list[tuple[str, str]] = []
    if eng is None:
        kw = {"global_descriptors": list(global_descriptors)} if global_descriptors is not None else {}
        summary = yield from build_index(ref_dir, index, workers=workers, calibrate=calibrate, **kw)
        build_seconds, build_failed = summary.seconds, list(summary.failed)
        build_rate = summary.added / summary.seconds if summary.seconds > 0 else None
        eng = Engine.open(index)

    queries = scan_images(q_dir)
    preds: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    failed: list[tuple[str, str]] = []

    def one(path: Path):
        t = time.perf_counter()
        try:
            result = run_job(eng.search(path, top_k=top_k))
        except ImageLoadError as exc:
            return path, None, exc.reason, time.perf_counter() - t
        return path, result, "", time.perf_counter() - t

    n_threads = max(1, query_threads)
    t_all = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="bench-query")
    try:
        done = 0
        yield Progress("queries", 0, len(queries), "")
        for batch in bounded_map(pool, ((q, (lambda q=q: one(q))) for q in queries), 2 * n_threads):
            for _, fut in batch:
                path, result, reason, seconds = fut.result()
                done += 1
                if result is None:
                    failed.append((str(path), reason))
                    continue
                latencies.append(seconds)
                qid = path.relative_to(q_dir).with_suffix("").as_posix()
                for m in result.matches:
                    key = (qid, m.reference_id)
                    preds[key] = max(preds.get(key, -math.inf), float(m.score))
            yield Progress("queries", done, len(queries), "")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        info = eng.info
        eng.close()
    query_seconds = time.perf_counter() - t_all

    out.mkdir(parents=True, exist_ok=True)
    predictions = [Prediction(q, r, s) for (q, r), s in sorted(preds.items())]
    write_predictions(out / "predictions.csv", predictions)
    metrics = evaluate(ground_truth, predictions, threshold=threshold)
    unseen = _unseen_content(bench)
    positives = {(g.query_id, g.reference_id) for g in ground_truth if g.reference_id}
    cals = {"overall": calibration(predictions, positives)}
    for kind in sorted({g.content for g in ground_truth if g.content}):
        qs = {g.query_id for g in ground_truth if g.content == kind}
        cals[kind] = calibration([p for p in predictions if p.query_id in qs], positives)
    plots = [str(p) for p in reliability_diagrams(cals, out, unseen)]
    index_bytes = _tree_size(index)
    lat = np.array(latencies) * 1000 if latencies else np.array([math.nan])
    report = RunReport(
        metrics=metrics, bench_dir=str(bench), index_dir=str(index), run_dir=str(out),
        num_references=info.num_references, index_reused=reused, build_seconds=build_seconds,
        build_images_per_s=build_rate, num_queries=len(queries), query_seconds=query_seconds,
        queries_per_s=len(queries) / query_seconds if query_seconds > 0 else math.nan,
        latency_p50_ms=float(np.percentile(lat, 50)), latency_p95_ms=float(np.percentile(lat, 95)),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        index_bytes=index_bytes, bytes_per_reference=index_bytes / max(1, info.num_references),
        failed_queries=failed, build_failed=build_failed, unseen_content=unseen, reliability_plots=plots)
    write_atomic(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
    return report


def _unseen_content(bench: Path) -> list[str]:
    """Content kinds the benchmark marks as kept out of all tuning (``benchmark.json``)."""
    try:
        return list(json.loads((bench / "benchmark.json").read_text(encoding="utf-8")).get("unseen_content", []))
    except (OSError, ValueError):
        return []


def format_report(r: RunReport) -> str:
    def f(v, fmt=".1f"):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    build = ("reused" if r.index_reused else
             f"built in {f(r.build_seconds)} s, {f(r.build_images_per_s)} images/s")
    lines = [
        f"benchmark {r.bench_dir}: {r.num_references} references, {r.num_queries} queries",
        f"index     {r.index_dir} ({build}); {r.index_bytes / 1e6:.1f} MB, "
        f"{r.bytes_per_reference / 1024:.1f} KiB per reference",
        f"queries   {f(r.queries_per_s, '.2f')}/s; latency p50 {f(r.latency_p50_ms, '.0f')} ms, "
        f"p95 {f(r.latency_p95_ms, '.0f')} ms; peak RSS {r.peak_rss_mb:.0f} MB",
        format_table(r.metrics, r.unseen_content),
        f"run files {r.run_dir}",
        "releases  " + ", ".join(f"{k} {v}" for k, v in r.environment.items()),
    ]
    if r.failed_queries:
        lines.append(f"{len(r.failed_queries)} queries could not be read, e.g. {r.failed_queries[0]}")
    if r.build_failed:
        lines.append(f"{len(r.build_failed)} references could not be indexed, e.g. {r.build_failed[0]}")
    return "\n".join(lines)
