"""Calibration experiments on a built index and its benchmark, without rebuilding or re-querying.

The confidence model only rescores the verified candidates, so the candidates of every benchmark query
are collected once; each variant is then fitted on its own calibration pairs (edited copies of the
index's own references, as a build makes them) and scored on the stored candidates in seconds.

    python bench/calib_experiment.py collect /tmp/copylens-dev2 /tmp/dev2 --out /tmp/cands.jsonl
    python bench/calib_experiment.py pairs /tmp/dev2 --strategy uniform --out /tmp/pairs-uniform.json
    python bench/calib_experiment.py pairs /tmp/dev2 --strategy stratified --out /tmp/pairs-strat.json
    python bench/calib_experiment.py evaluate /tmp/copylens-dev2 /tmp/cands.jsonl /tmp/pairs-*.json

Every figure is printed per content kind; the benchmark's unseen kind is marked and never used to choose.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import Prediction, calibration, evaluate, read_ground_truth
from copylens.core.calibrate import Calibrator, calibrator_from_dict, fit, local_pairs
from copylens.core.engine import Engine, QueryConfig, candidate_insets
from copylens.core.imageio import load_image, scan_images
from copylens.core.progress import ConsoleProgress, run_job
from copylens.core.selfcal import DISTRACTOR_QUERIES, calibration_pairs, fit_calibration


def _config(sibling_likeness: float | None) -> QueryConfig | None:
    """The engine's query settings, with a lower sibling threshold when scanning it: every rival at least
    that alike then records its ``sibling_likeness``, and contrast_experiment.py --sibling-likeness
    replays any stricter threshold on the stored signals."""
    return None if sibling_likeness is None else QueryConfig(sibling_likeness=sibling_likeness)


def collect(bench: Path, index: Path, out: Path, threads: int = 2, sibling_likeness: float | None = None) -> None:
    q_dir = bench / "queries"
    queries = scan_images(q_dir)
    with Engine.open(index, _config(sibling_likeness)) as eng:
        ids = eng.store.ids_of_rows(eng.store.rows())
        kps = eng.store.keypoint_counts()

        def one(path: Path) -> dict:
            img = load_image(path, max_side=eng.config.query_max_side)
            cands, _ = run_job(eng.candidates(img))  # edge agreement included (Engine._edge_agreement)
            cands = [c for c in cands if c.row in ids]
            return {"query_id": path.relative_to(q_dir).with_suffix("").as_posix(),
                    "candidates": [[ids[c.row], kps.get(c.row, 0), c.signals] for c in cands],
                    "insets": candidate_insets(cands)}

        with ThreadPoolExecutor(threads) as pool, open(out, "w", encoding="utf-8") as fh:
            for i, rec in enumerate(pool.map(one, queries)):
                fh.write(json.dumps(rec) + "\n")
                if i % 100 == 0:
                    print(f"{i}/{len(queries)}", file=sys.stderr)


def pairs(index: Path, strategy: str, n: int, out: Path, seed: int = 0,
          sibling_likeness: float | None = None, distractor_queries: float = DISTRACTOR_QUERIES) -> None:
    with Engine.open(index, _config(sibling_likeness)) as eng:
        kps = eng.store.keypoint_counts()
        p = run_job(calibration_pairs(eng, seed=seed, max_queries=n, min_queries=min(n, 60), workers=2,
                                      strategy=strategy, distractor_queries=distractor_queries),
                    ConsoleProgress())
        out.write_text(json.dumps({"strategy": strategy, "names": list(eng.calibrator.names),
                                   "signals": p.signals, "labels": p.labels, "sources": p.sources,
                                   "queries": p.queries, "absent": p.absent, "insets": p.insets,
                                   "source_keypoints": [kps.get(r, 0) for r in p.sources]}))


def load_replay(bench: Path, cands_path: Path):
    """A benchmark's ground truth and its stored candidates, for replaying calibration variants: returns
    the ground truth, the content kinds, the (query, reference) pairs that are copies and the candidate
    records; prints the header of :func:`_report`'s rows (the unseen kind starred)."""
    gt = read_ground_truth(bench / "ground_truth.csv")
    unseen = set(json.loads((bench / "benchmark.json").read_text()).get("unseen_content", []))
    kinds = sorted({g.content for g in gt if g.content})
    positives = {(g.query_id, g.reference_id) for g in gt if g.reference_id}
    records = [json.loads(line) for line in cands_path.read_text().splitlines()]
    for rec in records:  # collected before the engine reported it: the reference's keypoints, from the store
        for c in rec["candidates"]:
            c[2].setdefault("reference_keypoints", float(c[1]))
    header = f"{'variant':<34} {'μAP':>6} {'r@1':>6} {'ECE':>6} | " + " | ".join(
        f"{k + ('*' if k in unseen else ''):>16}" for k in kinds)
    print(header + "\n" + "-" * len(header))
    return gt, kinds, positives, records


def copy_queries_only(data: dict) -> dict:
    """A pair file's data without its distractor queries (``absent``): the copy queries alone, as
    calibration pairs were before 2026-12-05 (each copy query is then seen again without its copy)."""
    gone = set(data.get("absent") or ())
    if not gone:
        return data
    keep = [i for i, q in enumerate(data["queries"]) if q not in gone]
    return {**data, "absent": [], "insets": local_pairs(data.get("insets"), keep),
            **{k: [data[k][i] for i in keep] for k in ("signals", "labels", "queries")}}


def evaluate_variants(bench: Path, cands_path: Path, pair_files: list[Path]) -> None:
    gt, kinds, positives, records = load_replay(bench, cands_path)
    for pf in pair_files:
        data = json.loads(pf.read_text())
        names = list(data["names"])
        n = sum(data["labels"])
        has_agree = any("edge_recall" in s for s in data["signals"])
        variants = [([], None), (["reference_keypoints"], None)]
        if has_agree:
            variants += [(["edge_recall", "edge_precision"], None), (["edge_recall", "edge_precision"], 0.85),
                         (["edge_recall", "edge_precision"], _neutral(data, ["edge_recall", "edge_precision"]))]
        if any(nm.startswith("global:") for nm in names):
            local = [nm for nm in names if not nm.startswith("global:")]
            glob = [nm for nm in names if nm.startswith("global:")]
            parts = [Calibrator.from_dict(fit_calibration(data["signals"], data["labels"], part))
                     for part in (local, glob)]
            _report(f"{pf.stem} ({n}) noisy-or", _NoisyOr(parts), records, gt, positives, kinds)
            # what builds fit (selfcal.fit_calibration -> calibrate.fit_fused)
            _report(f"{pf.stem} ({n}) fused (the build's)", calibrator_from_dict(fit_calibration(
                data["signals"], data["labels"], names)), records, gt, positives, kinds)
            for context in (["reference_keypoints"], ["reference_keypoints", "query_keypoints"]):
                _report(f"{pf.stem} ({n}) fused +{','.join(context)}", calibrator_from_dict(fit_calibration(
                    data["signals"], data["labels"], local + context + glob)), records, gt, positives, kinds)
        for extra, fill in variants:
            if extra and extra[0] not in data["signals"][0] and not has_agree:
                continue
            sig = _filled(data["signals"], extra, fill)
            cal = fit(sig, data["labels"], l2=1.0, positive_prior=_prior(data["labels"]), names=names + extra)
            label = f"{pf.stem} ({n}){' +' + ','.join(extra) if extra else ''}{'' if fill is None else f' fill {fill}'}"
            _report(label, cal, _filled_records(records, extra, fill), gt, positives, kinds)


def _prior(labels: list[int]) -> float:
    """The class weighting of selfcal.fit_calibration (non-copies count twice)."""
    share = sum(labels) / len(labels)
    return share / (2 - share)


class _NoisyOr:
    """Two or more calibrated models of different evidence combined as independent experts:
    p = 1 - prod(1 - p_i) (a copy is shown by either kind of evidence)."""

    def __init__(self, parts: list[Calibrator]) -> None:
        self.parts = parts

    def predict(self, signals: list[dict]) -> np.ndarray:
        q = np.ones(len(signals))
        for c in self.parts:
            q *= 1.0 - c.predict(signals)
        return 1.0 - q

    predict_query = predict


def _neutral(data: dict, names: list[str]) -> dict[str, float]:
    """Per signal, halfway between the median of the calibration copies and of the non-copies: "no
    evidence either way" for a candidate the signal cannot judge (from the calibration pairs only)."""
    out = {}
    for k in names:
        pos = [s[k] for s, y in zip(data["signals"], data["labels"], strict=True) if y and k in s]
        neg = [s[k] for s, y in zip(data["signals"], data["labels"], strict=True) if not y and k in s]
        out[k] = round(float(np.median(pos) + np.median(neg)) / 2, 3)
    return out


def _filled(signals: list[dict], extra: list[str], fill) -> list[dict]:
    """Candidates without a value for an extra signal (no homography, too few edges) get ``fill`` (a
    number, or a value per signal)."""
    if fill is None:
        return signals
    value = fill if isinstance(fill, dict) else dict.fromkeys(extra, fill)
    return [{**s, **{k: s.get(k, value[k]) for k in extra}} for s in signals]


def _filled_records(records: list[dict], extra: list[str], fill: float | None) -> list[dict]:
    if fill is None:
        return records
    return [{**r, "candidates": [[c[0], c[1], _filled([c[2]], extra, fill)[0]] for c in r["candidates"]]}
            for r in records]


def _report(label: str, cal: Calibrator, records: list[dict], gt, positives, kinds) -> None:
    preds = []
    for rec in records:
        cands = rec["candidates"]
        if not cands:
            continue
        # a contrast stage judges a query's candidates together (an inset not against what is around it)
        scores = cal.predict_query([c[2] for c in cands], [tuple(p) for p in rec.get("insets", ())])
        best: dict[str, float] = {}
        for (rid, _, _), s in zip(cands, scores, strict=True):
            best[rid] = max(best.get(rid, 0.0), float(s))
        for rid, s in sorted(best.items(), key=lambda kv: -kv[1])[:10]:
            preds.append(Prediction(rec["query_id"], rid, s))
    m = evaluate(gt, preds)
    cells = []
    for k in kinds:
        qs = {g.query_id for g in gt if g.content == k}
        pc = m.per_content[k]
        cells.append(f"{pc.micro_ap:.3f}/{calibration([p for p in preds if p.query_id in qs], positives).ece:.3f}")
    print(f"{label:<34} {m.micro_ap:6.3f} {m.recall_at_1:6.3f} {calibration(preds, positives).ece:6.3f} | "
          + " | ".join(f"{c:>16}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("bench", type=Path)
    c.add_argument("index", type=Path)
    c.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("pairs")
    p.add_argument("index", type=Path)
    p.add_argument("--strategy", default="uniform")
    p.add_argument("--n", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--distractor-queries", type=float, default=DISTRACTOR_QUERIES,
                   help="queries searched with their source excluded, per copy query (0: none, as before "
                   "2026-12-05)")
    for sp in (c, p):
        sp.add_argument("--sibling-likeness", type=float, default=None,
                        help="the engine's sibling threshold for this collection (default: the engine's own)")
    e = sub.add_parser("evaluate")
    e.add_argument("bench", type=Path)
    e.add_argument("cands", type=Path)
    e.add_argument("pairs", type=Path, nargs="+")
    a = ap.parse_args()
    if a.cmd == "collect":
        collect(a.bench, a.index, a.out, sibling_likeness=a.sibling_likeness)
    elif a.cmd == "pairs":
        pairs(a.index, a.strategy, a.n, a.out, a.seed, a.sibling_likeness, a.distractor_queries)
    else:
        evaluate_variants(a.bench, a.cands, a.pairs)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
