"""The optimizer of the preference loop and of the GRPO loop."""

from __future__ import annotations

import torch


def adamw(params: list[torch.nn.Parameter], lr: float,
          weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where torch has one for these parameters (floating
    point, on CPU or CUDA). On 2 CPU cores a 135M-parameter model's step takes 0.09 s fused
    against 0.55-0.95 s for the per-tensor loop. The update is the same; the fused kernel
    only orders the arithmetic differently."""
    fused = bool(params) and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda")
                                 for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
