"""Dynamic network surgery (Guo et al. 2016): masks that prune and splice during training."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..prune import prune_mask
from ._common import _check_density, _module, _weight
from .masks import MaskedWeight, _mask_of, _original, _set_mask


def _kth_largest(values: torch.Tensor, k: int) -> float:
    """The k-th largest of a flat tensor (1 <= k <= numel)."""
    return float(torch.kthvalue(values, values.numel() - k + 1).values)


class DynamicSurgery:
    """Dynamic network surgery (Guo et al. 2016) driven by target densities.

    Each layer's weight is masked with a straight-through `MaskedWeight`: the loss only sees the
    kept weights, but every weight receives the gradient, so pruned ones keep moving. Every
    `update_every` optimizer steps the masks are updated with two magnitude thresholds: with d
    the current target density, a weight outside the largest d * (1 + hysteresis) magnitudes is
    pruned, a weight among the largest d * (1 - hysteresis) is spliced back (or stays), and the
    ones in between keep their state, which stops weights near the threshold from flipping at
    every update (Guo et al.'s pair of thresholds a < b, expressed as ranks so that the density
    lands near its target whatever the weight distribution). The target falls from the layer's
    current density to `densities[name]` along a cubic ramp over the first `ramp` fraction of
    training (gradual pruning lets the network adapt), then stays there while surgery goes on.

    Use `on_step` as `train(..., on_step=dns.on_step)`; call `finish()` afterwards to switch to
    fixed masks (pruned weights no longer learn), which is what the layers are encoded with.
    """

    def __init__(self, model: nn.Module, densities: Mapping[str, float], *, hysteresis: float = 0.1,
                 ramp: float = 0.6, update_every: int = 25):
        if not densities:
            raise ValueError("DynamicSurgery needs at least one layer")
        if not 0.0 <= hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        if not 0.0 <= ramp <= 1.0:
            raise ValueError(f"ramp must be in [0, 1], got {ramp!r}")
        if int(update_every) < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every!r}")
        self.model = model
        self.targets = {name: _check_density(name, d) for name, d in densities.items()}
        self.hysteresis, self.ramp, self.update_every = float(hysteresis), float(ramp), int(update_every)
        self._start: dict[str, float] = {}
        self.masks: dict[str, MaskedWeight] = {}
        for name in self.targets:
            module = _module(model, name)
            existing = _mask_of(module)
            mask = existing.mask.clone() if existing is not None else torch.ones_like(_weight(module), dtype=torch.bool)
            self._start[name] = float(mask.float().mean())
            self.masks[name] = _set_mask(module, mask, straight_through=True)

    def target(self, name: str, progress: float) -> float:
        """Target density of a layer when a fraction `progress` of training is done."""
        start, end = self._start[name], self.targets[name]
        if self.ramp == 0.0 or progress >= self.ramp:
            return end
        s = max(progress, 0.0) / self.ramp
        return end + (start - end) * (1.0 - s) ** 3

    @torch.no_grad()
    def update(self, progress: float) -> None:
        """Prune and splice every layer's mask for the given fraction of training done."""
        for name, p in self.masks.items():
            w = _original(_module(self.model, name)).detach().abs().reshape(-1)
            d = self.target(name, progress)
            n = w.numel()
            prune_below = _kth_largest(w, min(n, max(1, int(round(d * (1.0 + self.hysteresis) * n)))))
            splice_from = _kth_largest(w, min(n, max(1, int(round(d * (1.0 - self.hysteresis) * n)))))
            mask = p.mask.reshape(-1)
            mask[w < prune_below] = False
            mask[w >= splice_from] = True

    def on_step(self, step: int, total: int) -> None:
        """`train` callback: update the masks every `update_every` steps (step counts from 1)."""
        if step % self.update_every == 0 or step == total:
            self.update(step / total)

    def densities(self) -> dict[str, float]:
        return {name: float(p.mask.float().mean()) for name, p in self.masks.items()}

    def finish(self) -> dict[str, float]:
        """Stop surgery: fixed masks (no gradient to pruned weights), pruned weights zeroed.

        A layer left above its target density (the hysteresis band lets it overshoot by up to
        `hysteresis`) is trimmed to the target, dropping its smallest kept weights; it is never
        grown. Returns the final densities.
        """
        with torch.no_grad():
            for name, p in self.masks.items():
                original = _original(_module(self.model, name))
                w = (original.detach().abs() * p.mask).reshape(-1)
                keep = max(1, int(round(self.targets[name] * w.numel())))
                if int(p.mask.sum()) > keep:
                    p.mask.copy_(torch.from_numpy(prune_mask(w.numpy(), sparsity=1.0 - keep / w.numel()))
                                 .reshape(p.mask.shape))
                p.straight_through = False
                original.mul_(p.mask)
        return self.densities()
