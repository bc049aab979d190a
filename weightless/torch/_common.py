"""Helpers shared by the modules of weightless.torch: layer lookup, argument checks, tensors."""

from __future__ import annotations

from typing import Callable, Union, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

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


def _weight(module: nn.Module) -> torch.Tensor:
    """`module.weight` (a parameter, or the value its parametrizations compute) as a tensor.

    nn.Module's attribute lookup is typed `Tensor | Module`; this is the one place that narrows
    it. Every layer `_module` returns passes the check.
    """
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight


def _weight_parametrizations(module: nn.Module) -> parametrize.ParametrizationList:
    """The parametrizations of `module.weight`, which must be parametrized.

    torch.nn.utils.parametrize keeps them in a ModuleDict `module.parametrizations`, one
    ParametrizationList per tensor; the casts only restate that for the type checker.
    """
    parametrizations = cast(nn.ModuleDict, module.parametrizations)
    return cast(parametrize.ParametrizationList, parametrizations["weight"])


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
