"""Local recall: each query descriptor votes for the references owning its nearest indexed descriptors.

A neighbour earns a vote when it is clearly closer than the background: its distance is below ``ratio``
times the distance of the ``k``-th neighbour (an adaptive ratio test that, unlike Lowe's, does not throw
the vote away when two near-identical references both hold the descriptor). Each query descriptor votes
at most once per reference; the direct and the mirrored query vote separately and a reference keeps the
larger of its two counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .localindex import Neighbours


@dataclass(frozen=True, slots=True)
class RecallConfig:
    neighbours: int = 10  # k nearest indexed descriptors looked up per query descriptor
    ratio: float = 0.8  # a neighbour votes when its distance < ratio * distance of the k-th neighbour
    candidates: int = 12  # references passed on to geometric verification


@dataclass(frozen=True, slots=True)
class Votes:
    """Vote counts per reference row: ``rows`` [C] int64 sorted by ``votes`` [C] descending."""

    rows: np.ndarray
    votes: np.ndarray
    mirrored_votes: np.ndarray  # of ``votes``, how many came from the mirrored query

    def as_dict(self) -> dict[int, int]:
        return {int(r): int(v) for r, v in zip(self.rows, self.votes, strict=True)}


def _count(rows: np.ndarray, voting: np.ndarray) -> dict[int, int]:
    """Votes per row, one per query descriptor and row."""
    n, k = rows.shape
    qid = np.repeat(np.arange(n), k).reshape(n, k)
    pairs = np.stack([qid[voting], rows[voting]], axis=1)
    if pairs.size == 0:
        return {}
    pairs = np.unique(pairs, axis=0)
    uniq, counts = np.unique(pairs[:, 1], return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist(), strict=True))


def vote(neigh: Neighbours, num_direct: int, cfg: RecallConfig = RecallConfig(),
         exclude_rows: frozenset[int] = frozenset()) -> Votes:
    """Count votes; rows ``[:num_direct]`` of ``neigh`` are the direct query, the rest the mirrored one."""
    if neigh.rows.shape[1] == 0:
        e = np.zeros(0, np.int64)
        return Votes(e, e.copy(), e.copy())
    d = neigh.sq_dists
    kth = d[:, -1:]
    voting = (d < (cfg.ratio ** 2) * kth) & (neigh.rows >= 0)
    if exclude_rows:
        voting &= ~np.isin(neigh.rows, np.fromiter(exclude_rows, np.int64))
    direct = _count(neigh.rows[:num_direct], voting[:num_direct])
    mirror = _count(neigh.rows[num_direct:], voting[num_direct:])
    keys = set(direct) | set(mirror)
    if not keys:
        e = np.zeros(0, np.int64)
        return Votes(e, e.copy(), e.copy())
    rows = np.fromiter(keys, np.int64)
    dv = np.array([direct.get(int(r), 0) for r in rows])
    mv = np.array([mirror.get(int(r), 0) for r in rows])
    votes = np.maximum(dv, mv)
    order = np.lexsort((rows, -votes))
    return Votes(rows[order], votes[order], np.where(mv > dv, mv, 0)[order])


def top_candidates(v: Votes, n: int) -> list[tuple[int, int]]:
    """The ``n`` best (row, votes) pairs."""
    return [(int(r), int(c)) for r, c in zip(v.rows[:n], v.votes[:n], strict=True)]
