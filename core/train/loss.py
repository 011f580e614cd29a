"""SSCD's training objective: InfoNCE over a batch of view pairs plus the KoLeo entropy regulariser.

Meta's SSCD (Pizzi et al., CVPR 2022): rows ``i`` and ``i + N`` of a ``[2N x D]`` batch of
L2-normalised descriptors are two views of one image; every other row is a negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair_index(n2: int, device) -> torch.Tensor:
    n = n2 // 2
    return torch.cat([torch.arange(n, n2, device=device), torch.arange(0, n, device=device)])


def info_nce(z: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy of each row's positive against all other rows (self excluded)."""
    if z.shape[0] % 2:
        raise ValueError("info_nce needs an even number of rows (pairs i, i + N)")
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(sim, _pair_index(len(z), z.device))


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate (negated): ``-mean(log(distance to the nearest other row))``,
    the row's own positive excluded, as in SSCD. Minimising it spreads the descriptors out."""
    n2 = len(z)
    d2 = (2.0 - 2.0 * (z @ z.T)).clamp(min=0.0)
    mask = torch.eye(n2, dtype=torch.bool, device=z.device)
    mask[torch.arange(n2, device=z.device), _pair_index(n2, z.device)] = True
    nearest = d2.masked_fill(mask, float("inf")).min(dim=1).values
    return -torch.log(nearest.sqrt() + eps).mean()


def sscd_loss(z: torch.Tensor, temperature: float = 0.05, entropy_weight: float = 30.0
              ) -> tuple[torch.Tensor, dict[str, float]]:
    contrastive = info_nce(z, temperature)
    entropy = koleo(z)
    total = contrastive + entropy_weight * entropy
    return total, {"loss": total.item(), "infonce": contrastive.item(), "koleo": entropy.item()}
