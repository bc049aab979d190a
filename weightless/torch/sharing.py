"""Weight sharing: k-means clusters as a `SharedWeight` parametrization with trainable centroids."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..cluster import kmeans_1d
from ._common import _module, _weight
from .masks import bake


class SharedWeight(nn.Module):
    """Parametrization `weight = centroids[codes]` at kept positions, 0 elsewhere.

    The centroids are the only trainable values: the gradient of a centroid is the sum of the
    gradients of the weights in its cluster (the backward of the gather), as in Deep
    Compression's centroid fine-tuning; the codes never change. The parametrized tensor's own
    original value is ignored.
    """

    # Buffers, so that they follow the module's .to() and state_dict.
    codes: torch.Tensor
    mask: torch.Tensor

    def __init__(self, codes: torch.Tensor, mask: torch.Tensor, centroids: torch.Tensor):
        super().__init__()
        if codes.shape != mask.shape:
            raise ValueError(f"codes {tuple(codes.shape)} and mask {tuple(mask.shape)} differ in shape")
        self.register_buffer("codes", codes.to(torch.long).clone())
        self.register_buffer("mask", mask.to(torch.bool).clone())
        self.centroids = nn.Parameter(centroids.detach().to(torch.float32).clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        shared = self.centroids[self.codes].to(original.dtype)
        return torch.where(self.mask, shared, torch.zeros((), dtype=original.dtype))


def cluster_layer(model: nn.Module, name: str, clusters: int, *, seed: int = 0, init: str = "density") -> SharedWeight:
    """Weight sharing for one layer: 1-D k-means (`weightless.cluster.kmeans_1d`, density-based
    initialisation by default) on its nonzero weights, attached as a `SharedWeight` so that
    `train` fine-tunes the centroids. Any mask on the layer is baked first; zeros stay zeros.
    """
    module = _module(model, name)
    bake(model, [name])
    w = _weight(module).detach()
    mask = w != 0
    if not bool(mask.any()):
        raise ValueError(f"layer {name!r} has no nonzero weight to cluster")
    c = kmeans_1d(w[mask].cpu().numpy(), clusters, init=init, seed=seed)
    codes = torch.zeros(w.shape, dtype=torch.long)
    codes[mask] = torch.from_numpy(c.codes.astype(np.int64))
    p = SharedWeight(codes, mask, torch.from_numpy(c.codebook))
    _weight(module).requires_grad_(False)
    parametrize.register_parametrization(module, "weight", p)
    return p
