"""Local recall: each query descriptor votes for the references owning its nearest indexed descriptors.

A neighbour earns a vote when it is clearly closer than the background: its distance is below ``ratio``
times the distance of the ``k``-th neighbour (an adaptive ratio test that, unlike Lowe's, does not throw
the vote away when two near-identical references both hold the descriptor). Each query descriptor votes
at most once per reference; each query variant (direct, mirrored, inverted, ...) votes separately and a
reference keeps its best variant's count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .index.local import Neighbours


@dataclass(frozen=True, slots=True)
class RecallConfig:
    neighbours: int = 10  # k nearest indexed descriptors looked up per query descriptor
    ratio: float = 0.8  # a neighbour votes when its distance < ratio * distance of the k-th neighbour
    candidates: int = 12  # references passed on to geometric verification
    # Votes favour references with many keypoints: a 500-keypoint photo collects chance votes that a
    # 30-keypoint icon never can, so one textured reference acts as a hub. These references, best by
    # votes / sqrt(keypoints), are verified too (verifying a few-keypoint reference is cheap).
    normalised_candidates: int = 6


@dataclass(frozen=True, slots=True)
class Votes:
    """Votes per reference row: ``rows`` [C] int64 sorted by ``votes`` [C] descending.

    ``by_variant`` ``[C x V]`` splits them by query variant (direct, mirrored, ...); a reference's ``votes``
    is its best variant's count.
    """

    rows: np.ndarray
    votes: np.ndarray
    by_variant: np.ndarray

    @staticmethod
    def empty(num_variants: int) -> Votes:
        e = np.zeros(0, np.int64)
        return Votes(e, e.copy(), np.zeros((0, num_variants), np.int64))


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


def vote(neigh: Neighbours, num_variants: int, cfg: RecallConfig = RecallConfig(),
         exclude_rows: frozenset[int] = frozenset()) -> Votes:
    """Count votes; ``neigh`` holds ``num_variants`` equal blocks of rows, one per query variant."""
    if neigh.rows.shape[1] == 0 or neigh.rows.shape[0] == 0:
        return Votes.empty(num_variants)
    d = neigh.sq_dists
    kth = d[:, -1:]
    voting = (d < (cfg.ratio ** 2) * kth) & (neigh.rows >= 0)
    if exclude_rows:
        voting &= ~np.isin(neigh.rows, np.fromiter(exclude_rows, np.int64))
    n = neigh.rows.shape[0] // num_variants
    counts = [_count(neigh.rows[i * n:(i + 1) * n], voting[i * n:(i + 1) * n]) for i in range(num_variants)]
    keys = set().union(*counts)
    if not keys:
        return Votes.empty(num_variants)
    rows = np.fromiter(keys, np.int64)
    by_variant = np.array([[c.get(int(r), 0) for c in counts] for r in rows], np.int64)
    votes = by_variant.max(axis=1)
    order = np.lexsort((rows, -votes))
    return Votes(rows[order], votes[order], by_variant[order])
