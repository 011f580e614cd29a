"""Confidence for a queue's own share of copies (a prior shift; Saerens et al. 2002).

An index calibrates its confidence on edited copies of its own references, searched as copies, and on
half as many more searched with their original excluded, as queries whose original is not indexed
(``selfcal``): its confidences are right for a queue in which that share of queries are copies
(``calibrated`` below, two in three). A queue with fewer copies reads over-confident and one with more
reads under-confident, even when the evidence is judged right. Bayes' rule on the odds moves every confidence to another share:

    logit(p') = logit(p) + log(share / (1 - share)) - log(calibrated / (1 - calibrated))

This changes no ranking (the shift is the same for every candidate). :func:`estimate_share` finds a
queue's share from its own unlabelled confidences by expectation-maximisation (Saerens et al., "Adjusting
the outputs of a classifier to new a priori probabilities", Neural Computation 14, 2002): the share is the
mean of the confidences moved to it. Both assume that only the share differs, not what a copy's or a
non-copy's evidence looks like. Measured on the dev benchmark v2 with bench/prior_shift.py (README).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .calibrate import LOGIT_CLIP, _logits
from .results import QueryResult

MIN_SHARE, MAX_SHARE = 0.01, 0.99  # shares are kept inside this range (0 and 1 have infinite odds)
MIN_QUERIES = 20  # fewer queries than this: too few to estimate a share from


@dataclass(frozen=True, slots=True)
class ShareEstimate:
    share: float  # estimated share of copies among the queries
    queries: int  # queries it was estimated from
    iterations: int
    converged: bool


def check_share(share: float, what: str = "share of copies") -> float:
    """``share`` when it is a usable share of copies, else ValueError with a message for the user."""
    share = float(share)
    if not MIN_SHARE <= share <= MAX_SHARE:
        raise ValueError(f"{what} must be between {MIN_SHARE:.0%} and {MAX_SHARE:.0%}, not {share:.2%}")
    return share


def log_odds_shift(calibrated: float, share: float) -> float:
    """What moving confidences from the ``calibrated`` share of copies to ``share`` adds to each logit."""
    return float(_logits(np.float64(share), LOGIT_CLIP) - _logits(np.float64(calibrated), LOGIT_CLIP))


def shift_scores(scores: Sequence[float] | np.ndarray, calibrated: float, share: float) -> np.ndarray:
    """``scores`` (calibrated for a queue with the ``calibrated`` share of copies) for one with ``share``."""
    s = np.asarray(scores, np.float64)
    if s.size == 0 or share == calibrated:
        return s.copy()
    z = _logits(s, LOGIT_CLIP) + log_odds_shift(calibrated, share)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def estimate_share(top_scores: Sequence[float] | np.ndarray, calibrated: float, max_iterations: int = 500,
                   tolerance: float = 1e-6) -> ShareEstimate:
    """A queue's share of copies from each query's best confidence (0 for a query without any match),
    calibrated for the ``calibrated`` share. Raises ValueError below :data:`MIN_QUERIES` queries.

    The best confidence is the probability that the best match is the query's copy, a little below the
    probability that the query is a copy at all; the estimate leans low by that difference (dev benchmark
    v2: 0.60 for a share of 0.63)."""
    top = np.asarray(top_scores, np.float64)
    if top.size < MIN_QUERIES:
        raise ValueError(f"{top.size} queries are too few to estimate their share of copies "
                         f"(at least {MIN_QUERIES})")
    share = float(calibrated)
    for i in range(1, max_iterations + 1):
        new = float(np.clip(shift_scores(top, calibrated, share).mean(), MIN_SHARE, MAX_SHARE))
        done = abs(new - share) < tolerance
        share = new
        if done:
            return ShareEstimate(share, int(top.size), i, True)
    return ShareEstimate(share, int(top.size), max_iterations, False)


def shift_result(result: QueryResult, share: float) -> QueryResult:
    """``result`` with its matches' scores moved to a queue with ``share`` copies, from the share they are
    for (``result.copy_share``; ValueError when it is unknown). Imported hash-list matches keep theirs: they
    are not the index's calibrated confidence."""
    if result.copy_share is None:
        raise ValueError("the result does not say which share of copies its scores are for")
    scores = shift_scores([m.score for m in result.matches], result.copy_share, share)
    matches = [dataclasses.replace(m, score=float(s)) for m, s in zip(result.matches, scores, strict=True)]
    return dataclasses.replace(result, matches=matches, copy_share=share)
