"""Calibrated confidence: logistic models over verification statistics and global similarities.

The probability that a query is a copy of a candidate reference comes from two experts, each
``sigmoid(w · x + b)`` over standardised signals of the (query, candidate) pair: one over the local,
geometric evidence (:data:`SIGNALS`: votes, inliers, spreads, edge agreement), one over the global
descriptors' similarities. They are combined as independent evidence, ``p = 1 - (1 - p_local)(1 -
p_global)`` (:class:`FusedCalibrator`): either kind of evidence can show a copy. One logistic model over all
signals together (:class:`Calibrator` alone, the model of indexes built before 2026-11-30) adds them up, so
a missing kind counts against: a smooth wallpaper whose copy has no keypoints at all but a global
similarity of 0.66 scored 0.003, because nearly every calibration copy has inliers. Measured on the dev
benchmark v2 with bench/calib_experiment.py (issue 11; README).

Every model is fitted per index at build time on synthetic edited copies of the index's own references
(see selfcal.py) and stored in the manifest as plain numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .placement import rival_matrix

# name -> transform of the raw signal (signals missing from a candidate count as 0)
SIGNALS: dict[str, str] = {
    "votes": "log1p",  # local-recall votes for the reference
    "inliers": "log1p",  # RANSAC inliers of the best homography
    "matches": "log1p",  # ratio-test matches
    "inlier_ratio": "id",  # inliers / matches
    "query_spread": "sqrt",  # convex-hull area of the inliers / query area
    "reference_spread": "sqrt",  # convex-hull area of the inliers / reference area
    "plausible": "id",  # 1 when the projected outline is a convex, sane quadrilateral
    "mean_similarity": "id",  # mean RootSIFT cosine similarity of the inliers
    # inliers / the reference's keypoints: 40 inliers are overwhelming for a 60-keypoint icon and weak for a
    # 500-keypoint photo; without it, graphics' copies were under-confident (issue 11)
    "inlier_share": "sqrt",
    # dense edge agreement under the homography (core/agreement.py): near-identical siblings share keypoints
    # but not every part; missing (no homography, too few edges) means "no evidence either way" (FILLED)
    "edge_recall": "id",
    "edge_precision": "id",
    # what tells the reference from its most alike verified rival (an indexed sibling), shown by the query
    # minus what tells the rival apart, shown by the query; edge_recall without a sibling (core/agreement.py)
    "distinct_edges": "id",
}
# The best global similarity of the query warped back into a verified candidate's reference frame by its
# homography (Engine._evidence_frames): what the evidence says the copied picture is, whatever surrounds it.
# A picture pasted into another keeps the whole query's global similarity near 0 (dev v2 pastes: median
# 0.007, other edits 0.37). Missing where there is no frame (no homography; a cropped copy, whose outline
# leaves the query), and missing is no evidence either way. So it is its own expert, fused with the other
# two and gated: it says nothing (p = 0) for a candidate without a frame. Tried first, not adopted (dev v2,
# calibration seed 0, README): in the global signals, the global expert met it beside local evidence and
# keypoint-less wallpapers' copies fell (ECE 0.048 -> 0.192); as a local signal with a neutral fill, every
# crop read as a middling frame (crops' ECE 0.043 -> 0.076)
FRAME = "frame_similarity"


def unframed(names: Sequence[str]) -> list[str]:
    """``names`` without the evidence frame's: for the models that do not read it (the engine makes frames
    only for a model whose signals include it)."""
    return [n for n in names if n != FRAME]


# signals a candidate may lack that must not then read as 0 (strong evidence against): the fit stores a
# neutral value per signal, halfway between the medians of the calibration copies and non-copies
FILLED = ("edge_recall", "edge_precision", "distinct_edges")


# Context signals describe the pair rather than the evidence (a flat icon's few keypoints): their weights
# may take either sign, while every evidence weight stays non-negative (see fit).
CONTEXT: dict[str, str] = {
    "reference_keypoints": "log1p",  # keypoints the reference has
    "query_keypoints": "log1p",  # keypoints the query (or region) has
}
TRANSFORMS: dict[str, str] = {**SIGNALS, FRAME: "id", **CONTEXT}


def signal_names(global_signals: Sequence[str] = ()) -> tuple[str, ...]:
    """The calibration's inputs: the local signals, the evidence frame's, then one similarity per global
    descriptor."""
    return tuple(SIGNALS) + (FRAME,) + tuple(global_signals)


def feature_matrix(signals: Sequence[Mapping[str, float]], names: Sequence[str] = tuple(SIGNALS),
                   fill: Mapping[str, float] | None = None) -> np.ndarray:
    """``[N x len(names)]`` transformed features of the candidates' signals (global ones untransformed).
    A missing signal counts as ``fill[name]`` when given, else 0."""
    fill = fill or {}
    x = np.zeros((len(signals), len(names)), np.float64)
    for j, name in enumerate(names):
        tf = TRANSFORMS.get(name, "id")
        default = float(fill.get(name, 0.0))
        col = np.array([float(s.get(name, default)) for s in signals], np.float64)
        if tf == "log1p":
            col = np.log1p(np.maximum(col, 0))
        elif tf == "sqrt":
            col = np.sqrt(np.maximum(col, 0))
        x[:, j] = col
    return x


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Logistic model on standardised features; ``source`` says how it was obtained."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # "fitted on N pairs" or "default"
    names: tuple[str, ...] = tuple(SIGNALS)  # the signals, in the order of the weights
    fill: tuple[tuple[str, float], ...] = ()  # value of a FILLED signal a candidate lacks
    # an expert that has nothing to say about a candidate without this signal: p = 0 there (FRAME's)
    gate: str | None = None

    def predict(self, signals: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not signals:
            return np.zeros(0)
        x = (feature_matrix(signals, self.names, dict(self.fill)) - np.array(self.mean)) / np.array(self.std)
        z = x @ np.array(self.weights) + self.bias
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        if self.gate is not None:
            p = np.where([self.gate in s for s in signals], p, 0.0)
        return p

    def predict_query(self, signals: Sequence[Mapping[str, float]],
                      insets: Collection[tuple[int, int]] = ()) -> np.ndarray:
        """Probabilities for the candidates of one query (each judged alone: ``insets`` is not used)."""
        return self.predict(signals)

    def to_dict(self) -> dict:
        out = {"signals": list(self.names), "weights": list(self.weights), "bias": self.bias,
               "mean": list(self.mean), "std": list(self.std), "source": self.source}
        if self.fill:
            out["fill"] = dict(self.fill)
        if self.gate is not None:
            out["gate"] = self.gate
        return out

    @staticmethod
    def from_dict(d: Mapping, expected: Sequence[str] | None = None) -> Calibrator:
        """``expected``: the signals the engine produces; a model fitted on a subset of them (an index
        calibrated before a signal was added) keeps working with its own."""
        names = tuple(d.get("signals", ()))
        if expected is not None and not set(names) <= set(expected):
            raise ValueError(f"calibration was fitted on signals {list(names)} but this index produces "
                             f"{list(expected)}; rebuild the index")
        if not (len(d["weights"]) == len(d["mean"]) == len(d["std"]) == len(names)):
            raise ValueError("the calibration's weights, means and spreads do not match its signals")
        fill = d.get("fill") or {}
        if not isinstance(fill, Mapping) or not all(isinstance(v, (int, float)) for v in fill.values()):
            raise ValueError("the calibration's fill values are damaged")
        gate = d.get("gate")
        if gate is not None and gate not in names:
            raise ValueError(f"the calibration's gate {gate!r} is not one of its signals")
        return Calibrator(tuple(d["weights"]), float(d["bias"]), tuple(d["mean"]), tuple(d["std"]),
                          str(d["source"]), names, tuple((str(k), float(v)) for k, v in fill.items()), gate)


@dataclass(frozen=True, slots=True)
class FusedCalibrator:
    """Independent experts over different evidence, combined as ``p = 1 - prod(1 - p_i)``."""

    parts: tuple[Calibrator, ...]
    source: str
    names: tuple[str, ...]  # every signal any part reads

    def predict(self, signals: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not signals:
            return np.zeros(0)
        q = np.ones(len(signals))
        for c in self.parts:
            q *= 1.0 - c.predict(signals)
        return 1.0 - q

    def predict_query(self, signals: Sequence[Mapping[str, float]],
                      insets: Collection[tuple[int, int]] = ()) -> np.ndarray:
        """Probabilities for the candidates of one query (each judged alone: ``insets`` is not used)."""
        return self.predict(signals)

    def to_dict(self) -> dict:
        return {"kind": "noisy-or", "parts": [p.to_dict() for p in self.parts], "signals": list(self.names),
                "source": self.source}


MIN_FRAMED = 8  # copies and non-copies with an evidence frame each needed to fit its expert (fit_fused)
LEAD_CLIP = 7.0  # logits clipped to +-LEAD_CLIP; a query's only candidate leads by its logit + LEAD_CLIP
LOGIT_CLIP = 30.0  # the first-stage logit the second stage weighs (wider: no ties that would reorder a query)


def _logits(p: np.ndarray, clip: float = LEAD_CLIP) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return np.clip(np.log(p / (1 - p)), -clip, clip)


def leads(z: np.ndarray, rival: np.ndarray | None = None) -> np.ndarray:
    """Each candidate's logit minus the best other candidate's logit, among one query's candidates; with
    ``rival`` (``[N x N]``, placement.rival_matrix), minus the best of its rivals' (-LEAD_CLIP if none)."""
    if z.size == 0:
        return z
    if rival is not None:
        others = np.where(rival, z[None, :], -np.inf).max(axis=1)
        return z - np.maximum(others, -LEAD_CLIP)
    order = np.argsort(-z, kind="stable")
    second = z[order[1]] if z.size > 1 else -LEAD_CLIP
    return z - np.where(np.arange(z.size) == order[0], second, z[order[0]])


@dataclass(frozen=True, slots=True)
class ContrastCalibrator:
    """A second stage that judges each candidate against the query's other candidates.

    The first stage (``base``) judges every candidate alone. A graphic that is only a sibling of indexed
    graphics (the same cloud with rain instead of snow, the same box with another label) matches several
    of them about equally well, while a copy matches its own reference better than any sibling, so the
    candidate's lead (its first-stage logit minus the best other candidate's) is evidence of its own:
    ``p = sigmoid(a * z + b * lead + c)`` with ``a, b >= 0``, so the order within a query never changes.
    Fitted by :func:`fit_contrast` on the calibration queries, each used as a copy query and, with its
    source's candidate removed, as a distractor query. Measured on the dev benchmark v2 with
    bench/contrast_experiment.py (README).
    """

    base: Calibrator | FusedCalibrator
    weights: tuple[float, float]  # on the base logit and on the lead
    bias: float
    source: str
    # (a, b): the output logit becomes a * logit + b, fitted on each calibration query's top candidate only
    # (fit_top1), so the confidence a reader sees beside the best match is calibrated as what it claims;
    # a >= 0, so no order changes. (1, 0) in indexes calibrated before 2026-12-05.
    top1: tuple[float, float] = (1.0, 0.0)
    # the share of copies among queries its confidences are right for (core/prior.py): the copy views'
    # share of the views fit_top1 was fitted on; None before top1 existed (no query-level share)
    copy_share: float | None = None
    # an inset's lead skips the candidate around it (placement.insets: a picture pasted onto another does
    # not compete with what matches around it); False (every other candidate) in indexes calibrated
    # before 2026-12-06
    insets: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return self.base.names

    def predict_query(self, signals: Sequence[Mapping[str, float]],
                      insets: Collection[tuple[int, int]] = ()) -> np.ndarray:
        """Probabilities for the candidates of ONE query (each one's lead depends on the others); ``insets``:
        the pairs (inset, around) of them whose evidence is an inset of another's (placement.insets)."""
        if not signals:
            return np.zeros(0)
        x = lead_features(_logits(self.base.predict(signals), LOGIT_CLIP), insets if self.insets else ())
        out = x @ np.array(self.weights) + self.bias
        out = self.top1[0] * out + self.top1[1]
        return 1.0 / (1.0 + np.exp(-np.clip(out, -40, 40)))

    def to_dict(self) -> dict:
        out = {"kind": "contrast", "base": self.base.to_dict(), "weights": list(self.weights),
               "bias": self.bias, "signals": list(self.names), "source": self.source}
        if self.top1 != (1.0, 0.0):
            out["top1"] = list(self.top1)
        if self.copy_share is not None:
            out["copy_share"] = self.copy_share
        if self.insets:
            out["insets"] = True
        return out


def query_views(labels: Sequence[int], queries: Sequence[int], distractor_weight: float,
                absent: Collection[int] | None = None) -> tuple[list[tuple[list[int], float]], int]:
    """How the later stages see the calibration queries (``queries[i]`` names candidate i's). Returns the
    views, as candidate indices and a weight, and the number of copy queries.

    ``absent``: the queries that were searched as if their original were not indexed (selfcal's distractor
    queries, since 2026-12-05): each of them is one view of weight ``distractor_weight``, every other query
    one view of weight 1. Without it (calibration pairs of earlier releases), each query's candidates as
    they are (weight 1) and, when its copy is among them, once more without the copy (weight
    ``distractor_weight``): which misjudges what a query whose original is not indexed meets, since the
    original still took its place in the global score normalisation and as the other candidates' rival."""
    groups: dict[int, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(int(q), []).append(i)
    views = []
    if absent is not None:
        absent = set(absent)
        for q, idx in groups.items():
            views.append((idx, distractor_weight if q in absent else 1.0))
        return views, sum(q not in absent for q in groups)
    for idx in groups.values():
        views.append((idx, 1.0))
        rest = [i for i in idx if not labels[i]]
        if rest and len(rest) < len(idx):
            views.append((rest, distractor_weight))
    return views, len(groups)


def contrast_rows(first_stage: np.ndarray, labels: Sequence[int], queries: Sequence[int],
                  distractor_weight: float, features, absent: Collection[int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The second stage's training rows: every candidate of every :func:`query_views` view, with the
    view's weight. ``features(idx, z)`` makes the rows of candidates ``idx`` from their first-stage logits
    ``z`` (leads among exactly those). Returns rows, labels, weights and the number of queries."""
    views, n_queries = query_views(labels, queries, distractor_weight, absent)
    y_all = np.asarray(labels, np.float64)
    xs, ys, ws = [], [], []
    for idx, w in views:
        xs.append(features(idx, _logits(first_stage[idx], LOGIT_CLIP)))
        ys.append(y_all[idx])
        ws.append(np.full(len(idx), w))
    return np.vstack(xs), np.concatenate(ys), np.concatenate(ws), n_queries


def weighted_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, non_negative: Sequence[int],
                      l2: float = 1e-3) -> np.ndarray:
    """Weighted, L2-regularised logistic regression by Newton's method (bias last in the result); the
    weights of the columns ``non_negative`` are kept >= 0 by dropping the most recent offender and
    refitting (an active set)."""
    if y.min() == y.max():
        raise ValueError("calibration needs both copies and non-copies")
    active = list(range(x.shape[1]))
    while True:
        xs = np.hstack([x[:, active], np.ones((len(x), 1))])
        beta = np.zeros(xs.shape[1])
        for _ in range(100):
            p = 1 / (1 + np.exp(-np.clip(xs @ beta, -40, 40)))
            grad = xs.T @ (w * (p - y)) + l2 * beta
            hess = (xs * (w * p * (1 - p))[:, None]).T @ xs + l2 * np.eye(xs.shape[1])
            step = np.linalg.solve(hess, grad)
            beta -= step
            if float(np.abs(step).max()) < 1e-9:
                break
        negative = [j for j, b in zip(active, beta[:-1], strict=True) if j in non_negative and b < 0]
        if not negative:
            break
        active.remove(negative[0])
    full = np.zeros(x.shape[1] + 1)
    full[active], full[-1] = beta[:-1], beta[-1]
    return full


def lead_features(z: np.ndarray, insets: Collection[tuple[int, int]] = ()) -> np.ndarray:
    """``[N x 2]``: each candidate's first-stage logit ``z`` and its lead (an inset's skipping the candidate
    around it, ``insets`` as placement.insets gives them), the second stage's inputs."""
    rival = rival_matrix(len(z), insets) if insets else None
    return np.stack([z, leads(np.clip(z, -LEAD_CLIP, LEAD_CLIP), rival)], 1)


def local_pairs(pairs: Collection[tuple[int, int]] | None, idx: Sequence[int]) -> list[tuple[int, int]]:
    """The ``pairs`` (indices into all calibration candidates) among candidates ``idx``, as positions in
    ``idx``, in their order."""
    if not pairs:
        return []
    at = {g: k for k, g in enumerate(idx)}
    return [(at[i], at[j]) for i, j in pairs if i in at and j in at]


def fit_contrast(base: Calibrator | FusedCalibrator, signals: Sequence[Mapping[str, float]],
                 labels: Sequence[int], queries: Sequence[int], distractor_weight: float = 1.0,
                 l2: float = 1e-3, absent: Collection[int] | None = None,
                 insets: Collection[tuple[int, int]] | None = None) -> ContrastCalibrator:
    """The second stage over ``base``: logistic regression of the label on the base logit and the lead,
    weights non-negative, on :func:`contrast_rows` (copy queries and queries whose original is not
    indexed, see :func:`query_views`). ``insets``: the pairs (inset, around) of candidates (indices into
    ``signals``) of one query whose evidence is an inset of the other's (placement.insets); given, even
    empty, an inset's lead skips the candidate around it, as the engine's will."""
    x, y, w, n_queries = contrast_rows(base.predict(signals), labels, queries, distractor_weight,
                                       lambda idx, z: lead_features(z, local_pairs(insets, idx)), absent)
    beta = weighted_logistic(x, y, w, non_negative=(0, 1), l2=l2)
    where = " (an inset not against what is around it)" if insets is not None else ""
    return ContrastCalibrator(base, (float(beta[0]), float(beta[1])), float(beta[-1]),
                              f"{base.source}; judged against each query's other candidates{where} "
                              f"({n_queries} calibration queries)", insets=insets is not None)


def fit_top1(cal: ContrastCalibrator, signals: Sequence[Mapping[str, float]], labels: Sequence[int],
             queries: Sequence[int], distractor_weight: float = 1.0, l2: float = 1e-3,
             absent: Collection[int] | None = None, insets: Collection[tuple[int, int]] | None = None
             ) -> ContrastCalibrator:
    """``cal`` with its ``top1`` recalibration: logistic regression of "the query's top candidate is its
    copy" on that candidate's logit, over the top candidates of the views of :func:`query_views` (copy
    queries, and queries whose original is not indexed at weight ``distractor_weight``). The second stage
    is fitted on every candidate, most of them far from the top; the score a reviewer reads is the best
    one's (dev benchmark v2: icons' ECE 0.054 -> 0.045 on the
    build's calibration seed, μAP unchanged; bench/contrast_experiment.py --top1, README)."""
    cal = dataclasses.replace(cal, top1=(1.0, 0.0))  # refitting replaces an earlier recalibration
    xs, ys, ws = [], [], []
    views, n_queries = query_views(labels, queries, distractor_weight, absent)
    for idx, w in views:
        p = cal.predict_query([signals[i] for i in idx], local_pairs(insets, idx))
        j = int(np.argmax(p))
        xs.append(_logits(p[j:j + 1], LOGIT_CLIP)[0])
        ys.append(float(labels[idx[j]]))
        ws.append(w)
    beta = weighted_logistic(np.array(xs)[:, None], np.array(ys), np.array(ws), non_negative=(0,), l2=l2)
    # the copy queries' share of the views: the share of copies these confidences are right for
    share = n_queries / float(sum(ws))
    return dataclasses.replace(cal, top1=(float(beta[0]), float(beta[-1])), copy_share=share,
                               source=f"{cal.source}; best candidate recalibrated on {len(ys)} top candidates")


AnyCalibrator = Calibrator | FusedCalibrator | ContrastCalibrator  # what a manifest's record loads as


def calibrator_from_dict(d: Mapping, expected: Sequence[str] | None = None) -> AnyCalibrator:
    """The model a manifest records: one logistic model, several fused (``"kind": "noisy-or"``), or either
    with a second stage over each query's candidates (``"kind": "contrast"``)."""
    if d.get("kind") == "contrast":
        base = calibrator_from_dict(d["base"], expected)
        if isinstance(base, ContrastCalibrator):
            raise ValueError("a contrast calibration over another one")
        weights = tuple(float(v) for v in d["weights"])
        if len(weights) != 2 or min(weights) < 0 or not all(math.isfinite(v) for v in weights):
            raise ValueError("the calibration's contrast weights are damaged")
        top1 = tuple(float(v) for v in d.get("top1", (1.0, 0.0)))
        if len(top1) != 2 or top1[0] < 0 or not all(math.isfinite(v) for v in top1):
            raise ValueError("the calibration's top-candidate recalibration is damaged")
        # records of 2026-12-05 have top1 without copy_share: fitted at distractor weight 0.5, two in three
        share = d.get("copy_share", 2 / 3 if "top1" in d else None)
        if share is not None and not (isinstance(share, (int, float)) and 0 < share < 1):
            raise ValueError("the calibration's share of copies is damaged")
        around = d.get("insets", False)
        if not isinstance(around, bool):
            raise ValueError("the calibration's inset rule is damaged")
        return ContrastCalibrator(base, (weights[0], weights[1]), float(d["bias"]), str(d["source"]),
                                  (top1[0], top1[1]), None if share is None else float(share),
                                  around)
    if d.get("kind") == "noisy-or":
        parts = tuple(Calibrator.from_dict(p, expected) for p in d["parts"])
        if not parts:
            raise ValueError("a fused calibration without parts")
        return FusedCalibrator(parts, str(d["source"]), tuple(dict.fromkeys(n for p in parts for n in p.names)))
    if "kind" in d:
        raise ValueError(f"unknown calibration kind {d['kind']!r}")
    return Calibrator.from_dict(d, expected)


def fit_fused(signals: Sequence[Mapping[str, float]], labels: Sequence[int], l2: float = 1.0,
              positive_prior: float | None = None, names: Sequence[str] = tuple(SIGNALS)
              ) -> Calibrator | FusedCalibrator:
    """The local evidence and the global similarities fitted as two experts and fused (see the module
    documentation), with the evidence frame's expert (FRAME) when ``names`` has it and the calibration has
    enough candidates with a frame; one model when there is only one kind of signal."""
    local = [n for n in unframed(names) if not n.startswith("global:")]
    glob = [n for n in names if n.startswith("global:")]
    if not local or not glob:
        return fit(signals, labels, l2, positive_prior, names=unframed(names))
    # Each expert is fitted on its own signals. Fitted jointly instead (the likelihood of the fused
    # probability, projected gradient), the dev benchmark v2 gave μAP 0.947 but ECE 0.065 (wallpapers
    # 0.313) against 0.944 and 0.017 for experts fitted apart (bench/calib_experiment.py, README).
    parts = (fit(signals, labels, l2, positive_prior, names=local), fit(signals, labels, l2, positive_prior,
                                                                        names=glob))
    what = "local evidence and global similarity"
    framed = [i for i, s in enumerate(signals) if FRAME in s] if FRAME in names else []
    copies = sum(labels[i] for i in framed)
    if min(copies, len(framed) - copies) >= MIN_FRAMED:
        # fitted on the candidates with a frame only: among them, how far a frame's similarity shows a copy
        frame = fit([signals[i] for i in framed], [labels[i] for i in framed], l2, positive_prior, names=[FRAME])
        parts += (dataclasses.replace(frame, gate=FRAME),)
        what += f", and the evidence frame's similarity ({len(framed)} candidates with a frame)"
    return FusedCalibrator(parts, f"{parts[0].source}: {what} fused",
                           tuple(dict.fromkeys(n for p in parts for n in p.names)))


def fit(signals: Sequence[Mapping[str, float]], labels: Sequence[int], l2: float = 1.0,
        positive_prior: float | None = None, iterations: int = 50,
        names: Sequence[str] = tuple(SIGNALS)) -> Calibrator:
    """L2-regularised logistic regression by Newton's method, with every weight non-negative.

    Every signal is evidence for a copy (more inliers, more spread, higher similarity), so stronger evidence
    must never lower the confidence: an unconstrained fit over these correlated signals gave some of them
    negative weights (issue 11). A signal whose weight comes out negative is dropped (weight 0) and the
    model refitted, until all are non-negative (an active-set method).

    ``positive_prior``, when given, reweights the classes so the fitted probabilities correspond to that
    share of copies among candidates rather than the sample's share.
    """
    fill = neutral_fill(signals, labels, [n for n in names if n in FILLED])
    signals = [{**s, **{k: s.get(k, v) for k, v in fill.items()}} for s in signals] if fill else signals
    active = list(range(len(names)))
    while True:
        cal = dataclasses.replace(_fit(signals, labels, l2, positive_prior, iterations, names, active),
                                  fill=tuple(fill.items()))
        negative = [j for j in active if cal.weights[j] < 0 and names[j] not in CONTEXT]
        if not negative:
            return cal
        active.remove(min(negative, key=lambda j: cal.weights[j]))


def neutral_fill(signals: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str]
                 ) -> dict[str, float]:
    """Per signal, halfway between its median over the copies and over the non-copies that have it."""
    out = {}
    for k in names:
        pos = [s[k] for s, y in zip(signals, labels, strict=True) if y and k in s]
        neg = [s[k] for s, y in zip(signals, labels, strict=True) if not y and k in s]
        if pos and neg:
            out[k] = round((float(np.median(pos)) + float(np.median(neg))) / 2, 4)
    return out


def _fit(signals, labels, l2, positive_prior, iterations, names, active: list[int]) -> Calibrator:
    y = np.asarray(labels, np.float64)
    if y.size == 0 or y.min() == y.max():
        raise ValueError("calibration needs both copies and non-copies")
    x = feature_matrix(signals, names)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-9] = 1.0
    mask = np.zeros(len(names), bool)
    mask[active] = True
    xs = np.hstack([((x - mean) / std) * mask, np.ones((x.shape[0], 1))])  # inactive signals: weight 0
    sw = np.ones_like(y)
    if positive_prior is not None:
        p = y.mean()
        sw = np.where(y == 1, positive_prior / p, (1 - positive_prior) / (1 - p))
    w = np.zeros(xs.shape[1])
    reg = np.full(xs.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iterations):
        z = np.clip(xs @ w, -40, 40)
        p = 1 / (1 + np.exp(-z))
        grad = xs.T @ (sw * (p - y)) + reg * w
        hess = (xs * (sw * p * (1 - p))[:, None]).T @ xs + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Calibrator(tuple(float(v) for v in w[:-1]), float(w[-1]), tuple(float(v) for v in mean),
                      tuple(float(v) for v in std), f"fitted on {len(y)} pairs ({int(y.sum())} copies)",
                      tuple(names))


def default_calibrator(names: Sequence[str] = tuple(SIGNALS)) -> Calibrator:
    """A conservative hand-set model for indexes too small to fit one: needs many inliers spread widely.

    Works on raw transformed features (mean 0, std 1): about 50% at 12 inliers covering a plausible region;
    global similarities are ignored.
    """
    names = list(names)
    w = [0.0] * len(names)
    w[names.index("inliers")] = 3.0
    w[names.index("query_spread")] = 2.0
    w[names.index("plausible")] = 1.5
    w[names.index("inlier_ratio")] = 1.0
    bias = -(3.0 * math.log1p(12) + 2.0 * 0.2 + 1.5 + 1.0 * 0.3)
    return Calibrator(tuple(w), bias, tuple([0.0] * len(names)), tuple([1.0] * len(names)), "default",
                      tuple(names))
