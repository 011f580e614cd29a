"""Rows for "Export results" (CSV / JSON): one row per (query, ranked reference)."""

from __future__ import annotations

from .query_queue import QueueItem
from .settings import AppSettings


def result_rows(items: list[QueueItem], settings: AppSettings) -> list[dict]:
    rows = []
    for it in items:
        req = it.request
        if it.state != "done" or it.outcome is None:
            rows.append({"query": req.path or req.label, "query_sha256": "", "state": it.state, "rank": "",
                         "reference_id": "", "score": "", "verdict": "", "inliers": "", "mirrored": "",
                         "error": it.error, "copy_share": ""})
            continue
        if not it.outcome.result.matches:
            rows.append({"query": req.path or req.label, "query_sha256": it.outcome.sha256, "state": "done",
                         "rank": "", "reference_id": "", "score": "", "verdict": "no match", "inliers": "",
                         "mirrored": "", "error": "", "copy_share": share_cell(it.outcome.result.copy_share)})
        for rank, m in enumerate(it.outcome.result.matches, 1):
            rows.append({"query": req.path or req.label, "query_sha256": it.outcome.sha256, "state": "done",
                         "rank": rank, "reference_id": m.reference_id, "score": round(float(m.score), 6),
                         "verdict": settings.verdict(m.score), "inliers": m.num_inliers,
                         "mirrored": bool(m.evidence.mirrored), "error": "", "copy_share": share_cell(it.outcome.result.copy_share)})
    return rows


def share_cell(v: float | None) -> float | str:
    """The share of copies among queries that a result's scores are for, as a cell ("" when unknown)."""
    return "" if v is None else round(v, 4)
