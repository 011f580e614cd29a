"""Session reports: one CSV, one JSON and one HTML page for the queries reviewed, with an evidence PNG per
reported pair (query and reference side by side, the strongest match lines, the copied-region outline, and
a caption with the confidence, the verdict and the reviewer's decision; no interface hints).

Runs as a core-style generator job in a worker: decoding and drawing never touch the GUI thread. Drawing
uses Pillow only, so a report looks the same whatever the window's size or theme.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from copylens.core.fileio import file_sha256
from copylens.core.progress import Job, Progress

from .explain import explain, region_label
from .exports import share_cell
from .jobs import display_image
from .review_log import write_rows
from .settings import AppSettings

PANEL_HEIGHT = 420  # evidence PNG: both images scaled to this height
CAPTION = 46  # pixels of caption strip under the images
LINES = 50  # strongest match lines drawn


@dataclass(frozen=True, slots=True)
class ReportInfo:
    index_name: str
    index_path: str
    index_fingerprint: str  # first 16 hex digits of the manifest's sha256: which index answered
    reviewer: str


def index_fingerprint(index_path: str | Path) -> str:
    """The manifest's digest: ``manifest.json``, or ``shards.json`` for a sharded index (its calibration
    and shard list; each shard's manifest records its own files)."""
    for name in ("manifest.json", "shards.json"):
        try:
            return file_sha256(Path(index_path) / name)[:16]
        except OSError:
            continue
    return ""


def _fit(pixels: np.ndarray, height: int) -> tuple[Image.Image, float]:
    img = Image.fromarray(pixels)
    s = height / img.height
    return img.resize((max(1, round(img.width * s)), height), Image.Resampling.BILINEAR), s


def render_evidence(query: np.ndarray, query_scale: float, reference: np.ndarray, reference_scale: float,
                    match, caption: str) -> Image.Image:
    """Query (left) and reference (right); ``*_scale`` are original pixels per given pixel."""
    q, qs = _fit(query, PANEL_HEIGHT)
    r, rs = _fit(reference, PANEL_HEIGHT)
    gap = 16
    out = Image.new("RGB", (q.width + gap + r.width, PANEL_HEIGHT + CAPTION), (255, 255, 255))
    out.paste(q, (0, 0))
    out.paste(r, (q.width + gap, 0))
    d = ImageDraw.Draw(out)
    ev = match.evidence
    to_q = qs / query_scale  # original query pixels -> report pixels
    to_r = rs / reference_scale
    order = np.argsort(-np.asarray(ev.inlier_scores), kind="stable")[:LINES]
    for i in order:
        (qx, qy), (rx, ry), s = ev.query_points[i], ev.reference_points[i], float(ev.inlier_scores[i])
        colour = (round(255 * (1 - s)), round(200 * s), 40)  # red (weak) to green (near-identical)
        a, b = (qx * to_q, qy * to_q), (q.width + gap + rx * to_r, ry * to_r)
        d.line([a, b], fill=colour, width=1)
        for x, y in (a, b):
            d.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
    if ev.outline is not None:
        pts = [(float(x) * to_q, float(y) * to_q) for x, y in np.asarray(ev.outline)]
        d.line([*pts, pts[0]], fill=(0, 170, 230), width=3)
    if ev.region is not None and ev.region.kind != "full":
        x0, y0, x1, y1 = (v * to_q for v in ev.region.box)
        d.rectangle([x0, y0, x1, y1], outline=(240, 180, 0), width=2)
    for k, line in enumerate(caption.split("\n")[:2]):
        d.text((8, PANEL_HEIGHT + 6 + 18 * k), line, fill=(0, 0, 0))
    return out


def _pairs(item, decisions: Mapping[tuple[str, str], str], settings: AppSettings) -> list[tuple[int, str]]:
    """(match index, decision) for each pair worth reporting: above the "possible" threshold, or decided."""
    out = []
    for i, m in enumerate(item.outcome.result.matches):
        decision = decisions.get((item.outcome.sha256, m.reference_id), "")
        if m.score >= settings.possible_threshold or decision:
            out.append((i, decision))
    return out


def report_job(items: Sequence, engine, decisions: Mapping[tuple[str, str], str], settings: AppSettings,
               info: ReportInfo, out_dir: str | Path) -> Job[Path]:
    """Write ``report.html``, ``report.csv``, ``report.json`` and ``evidence/*.png`` into ``out_dir``.

    ``decisions`` is :meth:`ReviewLog.latest_all` taken on the GUI thread."""
    out = Path(out_dir)
    (out / "evidence").mkdir(parents=True, exist_ok=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows: list[dict] = []
    done = [it for it in items if it.state == "done" and it.outcome is not None]
    for n, it in enumerate(done):
        yield Progress("report", n, len(done), it.request.label)
        sha = it.outcome.sha256
        query_decision = decisions.get((sha, ""), "")
        base = {"query": it.request.path or it.request.label, "query_sha256": sha, "review": it.review,
                "query_decision": query_decision, "reviewer": info.reviewer, "index": info.index_name,
                "index_fingerprint": info.index_fingerprint, "reported": created,
                "copy_share": share_cell(it.outcome.result.copy_share)}  # the share of copies the scores are for
        pairs = _pairs(it, decisions, settings)
        if not pairs:
            best = it.outcome.result.best
            rows.append({**base, "rank": "", "reference_id": "", "score": round(best.score, 4) if best else "",
                         "verdict": "no match", "decision": query_decision, "inliers": "", "evidence": "",
                         "explanation": ""})
            continue
        qpixels, qscale = display_image(it.request, sha)
        for i, decision in pairs:
            m = it.outcome.result.matches[i]
            verdict = settings.verdict(m.score)
            ref = engine.reference_image(m.reference_id)
            caption = (f"{it.request.label}  <->  {m.reference_id}   confidence {m.score:.0%} ({verdict}), "
                       f"{m.num_inliers} inliers\ndecision: {decision or query_decision or 'not reviewed'}"
                       f"   reviewer: {info.reviewer}   index: {info.index_name} ({info.index_fingerprint})"
                       + (f"   region: {region_label(m.evidence.region)}" if m.evidence.region else ""))
            png = f"evidence/{n + 1:04d}_{i + 1:02d}.png"
            render_evidence(qpixels, qscale, ref.pixels, ref.scale_to_original, m,
                            caption).save(out / png)
            rows.append({**base, "rank": i + 1, "reference_id": m.reference_id, "score": round(m.score, 4),
                         "verdict": verdict, "decision": decision, "inliers": m.num_inliers, "evidence": png,
                         "explanation": " ".join(explain(m, settings.copy_threshold,
                                                         settings.possible_threshold))})
    write_rows(out / "report.csv", rows)
    (out / "report.json").write_text(json.dumps({"index": info.index_name, "index_path": info.index_path,
                                                 "index_fingerprint": info.index_fingerprint,
                                                 "reviewer": info.reviewer, "created": created, "rows": rows},
                                                indent=1), encoding="utf-8")
    (out / "report.html").write_text(_html(rows, info, created), encoding="utf-8")
    yield Progress("report", len(done), len(done))
    return out / "report.html"


def _html(rows: list[dict], info: ReportInfo, created: str) -> str:
    e = html.escape
    body = []
    for r in rows:
        img = (f'<a href="{e(r["evidence"])}"><img src="{e(r["evidence"])}" height="120"></a>'
               if r["evidence"] else "")
        body.append(f"<tr><td>{e(str(r['query']))}</td><td>{e(str(r['reference_id']))}</td>"
                    f"<td>{e(str(r['score']))}</td><td>{e(r['verdict'])}</td>"
                    f"<td>{e(r['decision'] or r['query_decision'] or 'not reviewed')}</td>"
                    f"<td title=\"{e(r['explanation'])}\">{e(str(r['inliers']))}</td><td>{img}</td></tr>")
    return ("<!doctype html><meta charset='utf-8'><title>CopyLens report</title>"
            "<style>body{font-family:sans-serif}td,th{border-bottom:1px solid #ccc;padding:4px}</style>"
            f"<h1>CopyLens report</h1><p>Index <b>{e(info.index_name)}</b> ({e(info.index_path)}, fingerprint "
            f"{e(info.index_fingerprint)}) &middot; reviewer {e(info.reviewer)} &middot; {e(created)}</p>"
            "<table><tr><th>Query</th><th>Reference</th><th>Confidence</th><th>Verdict</th><th>Decision</th>"
            "<th>Inliers</th><th>Evidence</th></tr>" + "".join(body) + "</table>")
