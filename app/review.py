"""Reviewing from the keyboard: decisions, undo, and where the selection goes next.

The rules a moderator relies on all day:
- ``C`` marks the selected pair a copy, ``X`` says the query holds no copy, ``S`` skips it as unsure: each
  settles the query, so the selection moves on to the next *unreviewed* query (not to the next junk
  candidate of the same one).
- ``N`` marks the selected pair not a copy and moves to the query's next candidate above the "possible"
  threshold; when none is left, the query counts as "no copy" and the selection moves on.
- ``Ctrl+Z`` undoes the last decision of this session (the log keeps both: it is append-only).

A query's review state is derived from the log (so it survives restarts, keyed by the file's sha256):
"copy" when any pair is a copy, else its query-level decision ("no copy" / "unsure"), else "no copy"
when every candidate above the threshold was rejected, else "" (unreviewed).
"""

from __future__ import annotations

from dataclasses import dataclass

from .review_log import UNDONE, ReviewLog

REVIEW_STATES = ("copy", "no copy", "unsure")


@dataclass(frozen=True, slots=True)
class Undo:
    queue_row: int
    reference_id: str  # "" for a query-level decision
    previous: str | None  # the decision before, None when there was none


def review_state(log: ReviewLog, item, possible_threshold: float) -> str:
    """"copy", "no copy", "unsure" or "" (unreviewed) for a finished queue item."""
    outcome = getattr(item, "outcome", None)
    if outcome is None:
        return ""
    pair = {m.reference_id: log.latest(outcome.sha256, m.reference_id) for m in outcome.result.matches}
    if "copy" in pair.values():
        return "copy"
    query = log.latest(outcome.sha256, "")
    if query in ("no copy", "unsure"):
        return query
    above = [m.reference_id for m in outcome.result.matches if m.score >= possible_threshold]
    if above and all(pair[r] == "not a copy" for r in above):
        return "no copy"
    return ""


class Reviewer:
    """Applies decisions to the window's current query and moves the selection (no widgets of its own)."""

    def __init__(self, window) -> None:
        self.w = window
        self.undo_stack: list[Undo] = []

    # ---- state ------------------------------------------------------------------------------------------
    def refresh(self, row: int) -> None:
        """Recompute one query's review state from the log and let the queue panel redraw it."""
        q = self.w.queue
        if 0 <= row < len(q.items) and q.items[row].outcome is not None:
            q.set_review(row, review_state(self.w.review_log, q.items[row], self.w.settings.possible_threshold))

    def _current(self):
        w = self.w
        row = w.queue_panel.current_row()
        item = w.queue.items[row] if 0 <= row < len(w.queue.items) else None
        if item is None or item.outcome is None or item.outcome is not w.results.outcome:
            return None, row
        return item, row

    def _record(self, row: int, item, reference_id: str, score: float, decision: str) -> None:
        log = self.w.review_log
        self.undo_stack.append(Undo(row, reference_id, log.latest(item.outcome.sha256, reference_id)))
        log.record(item.request.path or item.request.label, item.outcome.sha256, reference_id, score, decision,
                   item.outcome.result.copy_share)
        self.refresh(row)

    # ---- decisions --------------------------------------------------------------------------------------
    def decide_pair(self, decision: str) -> None:
        item, row = self._current()
        mi = self.w.results.current()
        if item is None or mi < 0:
            self.w.statusBar().showMessage("Select a result first (X: no copy in this query).", 3000)
            return
        m = item.outcome.result.matches[mi]
        self._record(row, item, m.reference_id, m.score, decision)
        self.w.results.set_decision(mi, decision)
        self.w.statusBar().showMessage(f"{item.request.label} ↔ {m.reference_id}: {decision}", 4000)
        if decision == "not a copy":
            nxt = self._next_open_candidate(item, mi)
            if nxt is not None:
                self.w.results.select(nxt)
                return
        self.next_unreviewed()

    def decide_query(self, decision: str) -> None:
        """"no copy" or "unsure" about the whole current query."""
        item, row = self._current()
        if item is None:
            self.w.statusBar().showMessage("Select a finished query first.", 3000)
            return
        best = item.outcome.result.best
        self._record(row, item, "", best.score if best is not None else 0.0, decision)
        self.w.statusBar().showMessage(f"{item.request.label}: {decision}", 4000)
        self.next_unreviewed()

    def bulk_copy(self, threshold: float) -> int:
        """Mark the best candidate of every finished, unreviewed query scoring at least ``threshold`` as a
        copy (each decision is logged and can be undone one by one); returns how many."""
        q, n = self.w.queue, 0
        for row, item in enumerate(q.items):
            best = item.outcome.result.best if item.outcome is not None else None
            if item.state == "done" and not item.review and best is not None and best.score >= threshold:
                self._record(row, item, best.reference_id, best.score, "copy")
                n += 1
        if self.w.results.outcome is not None:
            self.w.show_query(self.w.queue_panel.current_row(), force=True)
        self.w.statusBar().showMessage(f"Marked {n} queries as copies (at or above {threshold:.0%}).", 6000)
        return n

    def undo(self) -> None:
        if not self.undo_stack:
            self.w.statusBar().showMessage("Nothing to undo.", 3000)
            return
        u = self.undo_stack.pop()
        q = self.w.queue
        item = q.items[u.queue_row] if 0 <= u.queue_row < len(q.items) else None
        if item is None or item.outcome is None:
            return
        self.w.review_log.record(item.request.path or item.request.label, item.outcome.sha256, u.reference_id,
                                 0.0, u.previous or UNDONE)
        self.refresh(u.queue_row)
        self.w.queue_panel.select(u.queue_row)
        self.w.show_query(u.queue_row, force=True)
        ids = [m.reference_id for m in item.outcome.result.matches]
        if u.reference_id in ids:
            self.w.results.select(ids.index(u.reference_id))
        self.w.statusBar().showMessage(f"Undone: {item.request.label}"
                                       + (f" ↔ {u.reference_id}" if u.reference_id else ""), 4000)

    # ---- moving -----------------------------------------------------------------------------------------
    def _next_open_candidate(self, item, after: int) -> int | None:
        log, t = self.w.review_log, self.w.settings.possible_threshold
        for i in range(after + 1, len(item.outcome.result.matches)):
            m = item.outcome.result.matches[i]
            if m.score >= t and log.latest(item.outcome.sha256, m.reference_id) is None:
                return i
        return None

    def next_unreviewed(self, delta: int = 1) -> None:
        """Select the next finished, unreviewed query in the panel's order (wrapping around)."""
        panel, q = self.w.queue_panel, self.w.queue
        order = panel.visible_rows()
        if not order:
            return
        cur = panel.current_row()
        start = order.index(cur) if cur in order else -1
        for k in range(1, len(order) + 1):
            row = order[(start + delta * k) % len(order)]
            it = q.items[row]
            if it.state == "done" and not it.review:
                panel.select(row)
                return
        self.w.statusBar().showMessage("Every finished query is reviewed.", 4000)

    def step_candidate(self, delta: int) -> None:
        """Next / previous candidate of the current query (through the collapsed ones too)."""
        res = self.w.results
        if res.outcome is None:
            return
        i = res.current() + delta
        if 0 <= i < len(res.outcome.result.matches):
            res.select(i)
        else:
            self.w.statusBar().showMessage("No more candidates in this query (PgDn: next query).", 3000)
