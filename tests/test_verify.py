"""Descriptor matching in verification: the ratio test against a plain per-row implementation."""

from __future__ import annotations

import numpy as np

from copylens.core.verify import _ratio_matches


def _rootsift_like(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.random((n, 128)).astype(np.float32) ** 3
    d /= d.sum(axis=1, keepdims=True)
    return np.sqrt(d)


def _naive(q: np.ndarray, r: np.ndarray, ratio: float) -> set[tuple[int, int]]:
    """Lowe's test row by row with sorted distances; each reference keypoint kept for its closest claim."""
    claims: dict[int, tuple[float, int]] = {}
    for i, row in enumerate(q):
        d = np.linalg.norm(r - row, axis=1)
        j1, j2 = np.argsort(d, kind="stable")[:2]
        if d[j1] < ratio * d[j2] and (j1 not in claims or d[j1] < claims[j1][0]):
            claims[int(j1)] = (float(d[j1]), i)
    return {(i, j) for j, (_, i) in claims.items()}


def test_ratio_matches_agree_with_a_row_by_row_ratio_test() -> None:
    rng = np.random.default_rng(3)
    ref = _rootsift_like(rng, 300)
    # 150 noisy copies of reference descriptors (20 of them twice: two claims on one reference keypoint)
    src = np.r_[np.arange(150), np.arange(20)]
    noisy = ref[src] + 0.02 * rng.standard_normal((src.size, 128)).astype(np.float32)
    q = np.vstack([noisy, _rootsift_like(rng, 400)])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    qi, ri, sims = _ratio_matches(q, ref, 0.85)
    got = set(zip(qi.tolist(), ri.tolist(), strict=True))
    assert got == _naive(q, ref, 0.85)
    assert len(set(ri.tolist())) == len(ri)  # one claim per reference keypoint
    assert {j for _, j in got} >= set(range(150))  # every noisy copy found its source
    np.testing.assert_allclose(sims, np.sum(q[qi] * ref[ri], axis=1), atol=1e-5)


def test_ratio_matches_need_two_reference_descriptors() -> None:
    rng = np.random.default_rng(0)
    qi, ri, sims = _ratio_matches(_rootsift_like(rng, 5), _rootsift_like(rng, 1), 0.85)
    assert qi.size == ri.size == sims.size == 0
