"""Pseudo-quantisation shared by Quest and Double Sparsity labels (docs/methods.md §6.11)."""

from __future__ import annotations

import torch


def pseudo_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round `x` to `2**bits` levels between its min and max along the last dimension.

    x_hat = clamp(round((x - lo) * scale), 0, 2**bits - 1) / scale + lo with
    scale = (2**bits - 1) / (hi - lo) (a zero range counts as 1). 16 bits = unchanged.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    if bits == 16:
        return x
    x = x.float()
    lo = x.amin(dim=-1, keepdim=True)
    hi = x.amax(dim=-1, keepdim=True)
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span))
    levels = float(2**bits - 1)
    scale = levels / span
    return torch.round((x - lo) * scale).clamp_(0.0, levels) / scale + lo
