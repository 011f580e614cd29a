"""Copy-detection metrics with the ISC2021 (DISC21) definitions, plus ranking metrics and breakdowns.

Definitions (``P`` = all predictions pooled, ``G`` = ground-truth (query, reference) pairs):

* **μAP** (micro average precision): sort ``P`` by score descending; among equal scores the negatives come
  first (the worst case, as in the ISC2021 scorer, so a constant score cannot buy precision). A prediction
  is positive iff its (query, reference) pair is in ``G``; a prediction for a query without a match
  (distractor, or a query the ground truth does not know) is a false positive. With ``tp(k)`` the true
  positives among the first ``k``: ``μAP = Σ_{k: P[k] positive} (tp(k) / k) / |G|``. Pairs of ``G`` never
  predicted lower the result through the denominator. A duplicate (query, reference) prediction is an error.
* **recall@P90**: the highest recall ``tp(k)/|G|`` over prefixes with precision ``tp(k)/k >= 0.9``, and the
  score of the prediction at that position (the threshold); NaN / ``None`` when precision never reaches 0.9.
* **top-k accuracy** (``recall@k``): over queries that have a match, the fraction whose (any) true reference
  is among their own ``k`` highest-scored predictions (ties ordered negatives first, as above).
* The decision metrics use only predictions scoring at least ``threshold`` (all predictions when it is
  ``None``), because a distractor's perfect answer is *no prediction*:
  **precision@1**: over queries whose top prediction survives, the fraction whose top prediction is right;
  **accuracy@1**: over all queries, a matched query is right iff its top prediction is a true reference, a
  distractor iff it has no prediction;
  **MAP@5**: the mean over all queries of AP@5; for a matched query ``AP@5 = Σ_{k<=5} P@k·rel(k) /
  min(|refs|, 5)``; for a distractor query AP@5 is 1 if it has no prediction and 0 otherwise.
* **Breakdowns** by ground-truth ``edit`` / ``content`` columns: recall@1 over the subset's matched queries
  and μAP over the subset's predictions against the subset's ground-truth pairs (distractor queries carry
  an edit and a content too, so their false positives count in their subset).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TOP_KS = (1, 5, 10)  # k values reported by top_k_accuracy
GT_COLUMNS = ("query_id", "reference_id", "edit", "content", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class Prediction:
    query_id: str
    reference_id: str
    score: float


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth row; ``reference_id`` is ``None`` for a distractor query."""

    query_id: str
    reference_id: str | None
    edit: str = ""
    content: str = ""
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class ReliabilityBin:
    """Top-1 predictions whose score fell in ``[lo, hi)`` (the last bin includes 1.0)."""

    lo: float
    hi: float
    count: int
    mean_score: float  # mean confidence in the bin (nan when empty)
    accuracy: float  # fraction of those top-1s that are a true (query, reference) pair (nan when empty)


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error of the top-1 score of each query: ``sum_b n_b / N * |acc_b - conf_b|``.

    A top-1 is right when it is a ground-truth pair; a distractor's top-1 is always wrong. Queries without
    any prediction make no claim and are left out.
    """

    ece: float
    num_predictions: int
    bins: list[ReliabilityBin]


@dataclass(frozen=True)
class SubsetMetrics:
    name: str
    num_queries: int
    num_positive_queries: int
    recall_at_1: float
    micro_ap: float
    ece: float = float("nan")  # expected calibration error of the top-1 scores (see Calibration)


@dataclass(frozen=True)
class Metrics:
    micro_ap: float
    recall_at_p90: float
    threshold_at_p90: float | None
    recall_at_1: float
    recall_at_10: float
    top_k_accuracy: dict[int, float]
    precision_at_1: float
    accuracy_at_1: float
    map_at_5: float
    threshold: float | None
    num_queries: int
    num_positive_queries: int
    num_distractor_queries: int
    num_gt_pairs: int
    num_predictions: int
    per_edit: dict[str, SubsetMetrics] = field(default_factory=dict)
    per_content: dict[str, SubsetMetrics] = field(default_factory=dict)
    ece: float = float("nan")  # expected calibration error of the top-1 scores (see Calibration)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_k_accuracy"] = {str(k): v for k, v in self.top_k_accuracy.items()}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


class DuplicatePredictionError(ValueError):
    """The same (query, reference) pair was predicted twice."""


# ---------------------------------------------------------------- ISC2021 core

def _check_duplicates(preds: Sequence[Prediction]) -> None:
    seen: set[tuple[str, str]] = set()
    for p in preds:
        key = (p.query_id, p.reference_id)
        if key in seen:
            raise DuplicatePredictionError(
                f"duplicate prediction for query {p.query_id!r} and reference {p.reference_id!r}: "
                "each (query, reference) pair may be predicted once")
        seen.add(key)


def _ranked(preds: Sequence[Prediction], positives: set[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores sorted by score descending, negatives first among ties."""
    scores = np.array([p.score for p in preds], np.float64)
    labels = np.array([(p.query_id, p.reference_id) in positives for p in preds], bool)
    order = np.lexsort((labels, -scores))  # primary: -score ascending; secondary: False (negative) first
    return labels[order], scores[order]


def precision_recall(labels: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each prefix of ranked ``labels``."""
    tp = np.cumsum(labels)
    n = np.arange(1, len(labels) + 1)
    return tp / n, tp / max(num_positives, 1)


def micro_average_precision(preds: Sequence[Prediction], positives: set[tuple[str, str]]) -> float:
    if not positives:
        return float("nan")
    labels, _ = _ranked(preds, positives)
    precision, _ = precision_recall(labels, len(positives))
    return float(precision[labels].sum() / len(positives))


def recall_at_precision(preds: Sequence[Prediction], positives: set[tuple[str, str]],
                        required: float = 0.9) -> tuple[float, float | None]:
    """Highest recall at precision >= ``required`` and the score threshold that reaches it."""
    labels, scores = _ranked(preds, positives)
    if not positives or len(labels) == 0:
        return float("nan"), None
    precision, recall = precision_recall(labels, len(positives))
    ok = np.flatnonzero(precision >= required)
    if ok.size == 0:
        return float("nan"), None
    best = ok[np.argmax(recall[ok])]
    return float(recall[best]), float(scores[best])


# ---------------------------------------------------------------- evaluation

def _per_query(preds: Iterable[Prediction], positives: set[tuple[str, str]]) -> dict[str, list[bool]]:
    """For each query, the labels of its predictions ranked by score (negatives first among ties)."""
    by_q: dict[str, list[Prediction]] = defaultdict(list)
    for p in preds:
        by_q[p.query_id].append(p)
    out = {}
    for q, ps in by_q.items():
        ps.sort(key=lambda p: (-p.score, (p.query_id, p.reference_id) in positives))
        out[q] = [(p.query_id, p.reference_id) in positives for p in ps]
    return out


def _recall_at(ranked: dict[str, list[bool]], matched: Iterable[str], k: int) -> float:
    matched = list(matched)
    if not matched:
        return float("nan")
    return sum(any(ranked.get(q, [])[:k]) for q in matched) / len(matched)


def top1(predictions: Iterable[Prediction]) -> dict[str, Prediction]:
    """Each query's best prediction (ties: the greater reference id)."""
    top: dict[str, Prediction] = {}
    for p in predictions:
        if p.query_id not in top or (p.score, p.reference_id) > (top[p.query_id].score, top[p.query_id].reference_id):
            top[p.query_id] = p
    return top


def calibration(predictions: Sequence[Prediction], positives: set[tuple[str, str]], bins: int = 10) -> Calibration:
    """Reliability of the top-1 score per query over ``bins`` equal-width bins of [0, 1]."""
    top = top1(predictions)
    scores = np.array([p.score for p in top.values()], np.float64)
    right = np.array([(p.query_id, p.reference_id) in positives for p in top.values()], np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, np.clip(scores, 0.0, 1.0), side="right") - 1, 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        conf = float(scores[m].mean()) if n else float("nan")
        acc = float(right[m].mean()) if n else float("nan")
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, conf, acc))
        if n:
            ece += n / len(scores) * abs(acc - conf)
    return Calibration(ece if len(scores) else float("nan"), len(scores), out)


def _subset(name: str, queries: set[str], gt: Sequence[GroundTruth], preds: Sequence[Prediction]) -> SubsetMetrics:
    pos = {(g.query_id, g.reference_id) for g in gt if g.query_id in queries and g.reference_id}
    matched = {q for q, _ in pos}
    sub_preds = [p for p in preds if p.query_id in queries]
    ranked = _per_query(sub_preds, pos)
    return SubsetMetrics(name, len(queries), len(matched), _recall_at(ranked, matched, 1),
                         micro_average_precision(sub_preds, pos), calibration(sub_preds, pos).ece)


def evaluate(ground_truth: Sequence[GroundTruth], predictions: Sequence[Prediction],
             threshold: float | None = None) -> Metrics:
    """All metrics of this module for ``predictions`` against ``ground_truth`` (see the module docstring)."""
    preds = list(predictions)
    _check_duplicates(preds)
    positives = {(g.query_id, g.reference_id) for g in ground_truth if g.reference_id}
    refs_of: dict[str, set[str]] = defaultdict(set)
    for q, r in positives:
        refs_of[q].add(r)
    queries = {g.query_id for g in ground_truth}
    matched = set(refs_of)
    distractors = queries - matched

    micro_ap = micro_average_precision(preds, positives)
    r90, t90 = recall_at_precision(preds, positives, 0.9)
    ranked = _per_query(preds, positives)
    top_k = {k: _recall_at(ranked, matched, k) for k in TOP_KS}

    kept = ranked if threshold is None else _per_query([p for p in preds if p.score >= threshold], positives)
    answered = [q for q in queries if kept.get(q)]
    precision_at_1 = (sum(kept[q][0] for q in answered) / len(answered)) if answered else float("nan")
    correct = sum(bool(kept.get(q)) and kept[q][0] for q in matched) + sum(not kept.get(q) for q in distractors)
    accuracy_at_1 = correct / len(queries) if queries else float("nan")
    ap5 = []
    for q in queries:
        labels = kept.get(q, [])[:5]
        if q in distractors:
            ap5.append(0.0 if labels else 1.0)
            continue
        tp, s = 0, 0.0
        for k, rel in enumerate(labels, start=1):
            if rel:
                tp += 1
                s += tp / k
        ap5.append(s / min(len(refs_of[q]), 5))
    map_at_5 = float(np.mean(ap5)) if ap5 else float("nan")

    def breakdown(attr: str) -> dict[str, SubsetMetrics]:
        groups: dict[str, set[str]] = defaultdict(set)
        for g in ground_truth:
            if getattr(g, attr):
                groups[getattr(g, attr)].add(g.query_id)
        return {name: _subset(name, qs, ground_truth, preds) for name, qs in sorted(groups.items())}

    return Metrics(
        micro_ap=micro_ap, recall_at_p90=r90, threshold_at_p90=t90, recall_at_1=top_k[1],
        recall_at_10=top_k[10], top_k_accuracy=top_k, precision_at_1=precision_at_1,
        accuracy_at_1=accuracy_at_1, map_at_5=map_at_5, threshold=threshold, num_queries=len(queries),
        num_positive_queries=len(matched), num_distractor_queries=len(distractors), num_gt_pairs=len(positives),
        num_predictions=len(preds), per_edit=breakdown("edit"), per_content=breakdown("content"),
        ece=calibration(preds, positives).ece)


# ---------------------------------------------------------------- CSV

def _rows(path: str | Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh) if row and any(c.strip() for c in row)]


def read_predictions(path: str | Path) -> list[Prediction]:
    """``query_id,reference_id,score`` rows; a header line is optional."""
    rows = _rows(path)
    out = []
    for i, row in enumerate(rows):
        if i == 0 and row[0].strip().lower() == "query_id":
            continue
        if len(row) < 3:
            raise ValueError(f"{path}: line {i + 1}: expected query_id,reference_id,score, got {row!r}")
        try:
            score = float(row[2])
        except ValueError:
            raise ValueError(f"{path}: line {i + 1}: score {row[2]!r} is not a number") from None
        out.append(Prediction(row[0], row[1], score))
    return out


def read_ground_truth(path: str | Path) -> list[GroundTruth]:
    """``query_id,reference_id[,edit,content,x0,y0,x1,y1]`` rows (empty reference = distractor);
    with a header the columns may come in any order."""
    rows = _rows(path)
    cols = list(GT_COLUMNS)
    if rows and "query_id" in (c.strip().lower() for c in rows[0]):
        cols = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows):
        rec = dict(zip(cols, row, strict=False))
        if "query_id" not in rec or not rec["query_id"]:
            raise ValueError(f"{path}: row {i + 1} has no query_id: {row!r}")
        box = None
        if all(rec.get(c, "").strip() for c in ("x0", "y0", "x1", "y1")):
            box = tuple(int(float(rec[c])) for c in ("x0", "y0", "x1", "y1"))
        out.append(GroundTruth(rec["query_id"], rec.get("reference_id") or None,
                               rec.get("edit", rec.get("attack", "")),  # "attack": benchmarks made before v2
                               rec.get("content", ""), box))
    return out


def write_predictions(path: str | Path, predictions: Iterable[Prediction]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["query_id", "reference_id", "score"])
        for p in predictions:
            w.writerow([p.query_id, p.reference_id, f"{p.score:.6g}"])


def format_table(m: Metrics, unseen: Sequence[str] = ()) -> str:
    """A readable plain-text summary; content kinds in ``unseen`` (kept out of all tuning) are marked."""
    def f(v: float | None) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    lines = [
        f"queries {m.num_queries} ({m.num_positive_queries} copies, {m.num_distractor_queries} distractors), "
        f"{m.num_predictions} predictions",
        f"  μAP              {f(m.micro_ap)}",
        f"  recall@P90       {f(m.recall_at_p90)}  (threshold {f(m.threshold_at_p90)})",
        *(f"  recall@{k:<9} {f(v)}" for k, v in m.top_k_accuracy.items()),
        f"  precision@1      {f(m.precision_at_1)}" + ("" if m.threshold is None else f"  (score >= {m.threshold})"),
        f"  accuracy@1       {f(m.accuracy_at_1)}",
        f"  MAP@5            {f(m.map_at_5)}",
        f"  ECE (top-1)      {f(m.ece)}",
    ]
    for title, table in (("edit", m.per_edit), ("content", m.per_content)):
        if table:
            lines.append(f"  {'by ' + title:<16} {'queries':>8} {'copies':>7} {'recall@1':>9} {'μAP':>7} {'ECE':>7}")
            for s in table.values():
                name = s.name + (" (unseen)" if s.name in unseen else "")
                lines.append(f"    {name:<14} {s.num_queries:>8} {s.num_positive_queries:>7} "
                             f"{f(s.recall_at_1):>9} {f(s.micro_ap):>7} {f(s.ece):>7}")
    return "\n".join(lines)
