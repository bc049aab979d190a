"""Fixed and straight-through weight masks (`MaskedWeight`), magnitude pruning, `bake`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..prune import prune_mask
from ._common import _check_density, _module, _weight, _weight_parametrizations


def density(model: nn.Module, name: str) -> float:
    """Fraction of nonzero entries of a layer's (effective, masked) weight."""
    w = _weight(_module(model, name))
    return float(torch.count_nonzero(w)) / w.numel()


class MaskedWeight(nn.Module):
    """Parametrization `weight = original * mask` with a boolean mask buffer.

    `straight_through=False` is pruning with retraining: a pruned weight gets no gradient and
    stays pruned. `straight_through=True` is dynamic network surgery (Guo et al. 2016): the
    forward pass still uses the masked weight, but the gradient of the masked weight is passed
    to every original weight, pruned ones included, so a pruned weight keeps learning and can be
    spliced back when its magnitude grows past the splicing threshold.
    """

    mask: torch.Tensor  # a buffer, so that it follows the module's .to() and state_dict

    def __init__(self, mask: torch.Tensor, straight_through: bool = False):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool).clone())
        self.straight_through = bool(straight_through)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        kept = original * self.mask
        if not self.straight_through:
            return kept
        # Value: original * mask (the added term is exactly zero). Gradient: 1 everywhere.
        return kept + (original - original.detach()) * (~self.mask)


def _mask_of(module: nn.Module) -> MaskedWeight | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in _weight_parametrizations(module):
        if isinstance(p, MaskedWeight):
            return p
    return None


def _original(module: nn.Module) -> torch.Tensor:
    """The trainable tensor behind `module.weight` (the parametrization's original, if any)."""
    if parametrize.is_parametrized(module, "weight"):
        return _weight_parametrizations(module).original
    return _weight(module)


def _set_mask(module: nn.Module, mask: torch.Tensor, straight_through: bool) -> MaskedWeight:
    existing = _mask_of(module)
    if existing is not None:
        existing.mask.copy_(mask)
        existing.straight_through = straight_through
        return existing
    if parametrize.is_parametrized(module, "weight"):
        raise ValueError("the layer's weight already has another parametrization (e.g. shared weights); bake it first")
    p = MaskedWeight(mask, straight_through)
    parametrize.register_parametrization(module, "weight", p)
    return p


def magnitude_prune(model: nn.Module, densities: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Keep the largest-magnitude fraction `densities[name]` of each layer's weight; fixed masks.

    The masks stay attached (`MaskedWeight`, no gradient to pruned weights) so that retraining
    with `train` keeps the pruned weights at zero; `bake` makes them plain weights again. The
    selection is `weightless.prune.prune_mask`, the same as `weightless compress --sparsity`.
    Returns name -> mask.
    """
    masks: dict[str, torch.Tensor] = {}
    for name, d in densities.items():
        module = _module(model, name)
        d = _check_density(name, d)
        with torch.no_grad():
            w = _weight(module).detach().cpu().numpy()
        mask = torch.from_numpy(prune_mask(w, sparsity=1.0 - d))
        _set_mask(module, mask, straight_through=False)
        masks[name] = mask
    return masks


def keep_sparsity(model: nn.Module, names: Sequence[str]) -> dict[str, float]:
    """Fixed masks equal to each named layer's current nonzero pattern, so that retraining keeps
    its pruned weights at zero (e.g. the layers Algorithm 1 has not reached yet, after `bake`).

    Use this rather than copying a model with masks attached: `copy.deepcopy` of a parametrized
    module shares torch's generated class, and baking one copy breaks the other. Returns the
    layers' densities.
    """
    out: dict[str, float] = {}
    for name in names:
        module = _module(model, name)
        mask = _weight(module).detach() != 0
        _set_mask(module, mask, straight_through=False)
        out[name] = float(mask.float().mean())
    return out


def bake(model: nn.Module, names: Sequence[str] | None = None) -> None:
    """Remove the parametrizations (masks, shared weights) of the named layers (default: all),
    leaving each weight as a plain parameter holding its current masked / shared value."""
    if names is None:
        names = [n for n, m in model.named_modules() if parametrize.is_parametrized(m, "weight")]
    for name in names:
        module = _module(model, name)
        if parametrize.is_parametrized(module, "weight"):
            requires_grad = _original(module).requires_grad
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            _weight(module).requires_grad_(requires_grad)
