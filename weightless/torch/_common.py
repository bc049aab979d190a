"""Helpers shared by the modules of weightless.torch: layer lookup, argument checks, tensors."""

from __future__ import annotations

from typing import Callable, Union

import numpy as np
import torch
from torch import nn

ArrayLike = Union[np.ndarray, torch.Tensor]
StepCallback = Callable[[int, int], None]


def _module(model: nn.Module, name: str) -> nn.Module:
    """The submodule `name`, which must have a floating `weight` of at least 2 dimensions."""
    if not isinstance(name, str):
        raise TypeError(f"layer names are strings, got {type(name).__name__}")
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        layers = [n for n, m in modules.items() if n and _has_weight(m)]
        raise ValueError(f"no layer named {name!r}; layers with a weight: {', '.join(layers) or 'none'}")
    m = modules[name]
    if not _has_weight(m):
        raise ValueError(f"layer {name!r} ({type(m).__name__}) has no floating weight of 2 or more dimensions")
    return m


def _has_weight(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.is_floating_point() and w.dim() >= 2


def _check_density(name: str, d: float) -> float:
    d = float(d)
    if not 0.0 < d <= 1.0:  # also rejects NaN
        raise ValueError(f"density of {name!r} must be in (0, 1], got {d!r}")
    return d


def _as_tensor(a: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(a)
    return t if t.dtype == dtype else t.to(dtype)


@torch.no_grad()
def _forward_batched(module: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    was_training = module.training
    module.eval()
    try:
        return torch.cat([module(x[i: i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        module.train(was_training)
