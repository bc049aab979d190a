"""PyTorch integration: pruning with retraining, dynamic network surgery, weight sharing with
centroid fine-tuning, and the paper's Algorithm 1 with retraining, exported as a .wl file.

Import it explicitly (`import weightless.torch`); the rest of the package never imports torch.
Install with the `torch` extra (`pip install "weightless[torch]"`, pinned to a CPU build).

Why retraining matters: a Bloomier filter returns a random cluster index for a small fraction of
the pruned positions (false positives). Without retraining they cost accuracy and push t up; the
paper's compression comes from very sparse layers (dynamic network surgery) plus retraining the
layers after an encoded one around its errors, which makes a small t affordable.

    model = lenet_300_100()
    train(model, x, y, epochs=10)
    dns = DynamicSurgery(model, {"fc1": 0.02})       # masks follow |w|; pruned weights may return
    train(model, x, y, epochs=8, on_step=dns.on_step)
    dns.finish()                                       # fixed masks from here on
    results = algorithm1(model, [LayerSpec("fc1", clusters=8, cell_bits=10)], x, y)
    export_wl(model, results, "model.wl")              # weightless decompress / wl-decode read it

Layers are named by their module name ("fc1", "features.0"); the weight is `<name>.weight`.
Every function runs on the CPU and is reproducible for a given seed and thread count.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .cluster import kmeans_1d
from .codec import EncodedLayer, encode_layer
from .container import CompressionReport, compress, decompress
from .prune import prune_mask

__all__ = [
    "MaskedWeight",
    "SharedWeight",
    "DynamicSurgery",
    "magnitude_prune",
    "bake",
    "keep_sparsity",
    "cluster_layer",
    "LayerSpec",
    "LayerResult",
    "algorithm1",
    "encode_module",
    "export_wl",
    "load_wl",
    "train",
    "evaluate",
    "lenet_300_100",
    "lenet_5",
    "density",
]

ArrayLike = Union[np.ndarray, torch.Tensor]
StepCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------- models


def lenet_300_100() -> nn.Sequential:
    """LeNet-300-100 (784-300-100-10, ReLU), the paper's first MNIST model; input (N, 784)."""
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(100, 10)),
    ]))


def lenet_5() -> nn.Sequential:
    """Caffe's LeNet-5 (conv 20 and 50 of 5x5, max-pool, FC 800-500-10), the paper's second model.

    Input (N, 784) like LeNet-300-100, reshaped to 1x28x28 inside, so both share one data path.
    fc1 (500 x 800) is the paper's FC-0.
    """
    return nn.Sequential(OrderedDict([
        ("image", nn.Unflatten(1, (1, 28, 28))),
        ("conv1", nn.Conv2d(1, 20, 5)), ("pool1", nn.MaxPool2d(2)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(20, 50, 5)), ("pool2", nn.MaxPool2d(2)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(800, 500)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(500, 10)),
    ]))


# --------------------------------------------------------------------------- helpers


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


def density(model: nn.Module, name: str) -> float:
    """Fraction of nonzero entries of a layer's (effective, masked) weight."""
    w = _module(model, name).weight
    return float(torch.count_nonzero(w)) / w.numel()


def _kth_largest(values: torch.Tensor, k: int) -> float:
    """The k-th largest of a flat tensor (1 <= k <= numel)."""
    return float(torch.kthvalue(values, values.numel() - k + 1).values)


# --------------------------------------------------------------------------- masks


class MaskedWeight(nn.Module):
    """Parametrization `weight = original * mask` with a boolean mask buffer.

    `straight_through=False` is pruning with retraining: a pruned weight gets no gradient and
    stays pruned. `straight_through=True` is dynamic network surgery (Guo et al. 2016): the
    forward pass still uses the masked weight, but the gradient of the masked weight is passed
    to every original weight, pruned ones included, so a pruned weight keeps learning and can be
    spliced back when its magnitude grows past the splicing threshold.
    """

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


def _mask_of(module: nn.Module) -> Optional[MaskedWeight]:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, MaskedWeight):
            return p
    return None


def _original(module: nn.Module) -> torch.Tensor:
    """The trainable tensor behind `module.weight` (the parametrization's original, if any)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


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
    masks = {}
    for name, d in densities.items():
        module = _module(model, name)
        d = _check_density(name, d)
        with torch.no_grad():
            w = module.weight.detach().cpu().numpy()
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
    out = {}
    for name in names:
        module = _module(model, name)
        mask = module.weight.detach() != 0
        _set_mask(module, mask, straight_through=False)
        out[name] = float(mask.float().mean())
    return out


def bake(model: nn.Module, names: Optional[Sequence[str]] = None) -> None:
    """Remove the parametrizations (masks, shared weights) of the named layers (default: all),
    leaving each weight as a plain parameter holding its current masked / shared value."""
    if names is None:
        names = [n for n, m in model.named_modules() if parametrize.is_parametrized(m, "weight")]
    for name in names:
        module = _module(model, name)
        if parametrize.is_parametrized(module, "weight"):
            requires_grad = _original(module).requires_grad
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.weight.requires_grad_(requires_grad)


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
            mask = existing.mask.clone() if existing is not None else torch.ones_like(module.weight, dtype=torch.bool)
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


# --------------------------------------------------------------------------- weight sharing


class SharedWeight(nn.Module):
    """Parametrization `weight = centroids[codes]` at kept positions, 0 elsewhere.

    The centroids are the only trainable values: the gradient of a centroid is the sum of the
    gradients of the weights in its cluster (the backward of the gather), as in Deep
    Compression's centroid fine-tuning; the codes never change. The parametrized tensor's own
    original value is ignored.
    """

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
    w = module.weight.detach()
    mask = w != 0
    if not bool(mask.any()):
        raise ValueError(f"layer {name!r} has no nonzero weight to cluster")
    c = kmeans_1d(w[mask].cpu().numpy(), clusters, init=init, seed=seed)
    codes = torch.zeros(w.shape, dtype=torch.long)
    codes[mask] = torch.from_numpy(c.codes.astype(np.int64))
    p = SharedWeight(codes, mask, torch.from_numpy(c.codebook))
    module.weight.requires_grad_(False)
    parametrize.register_parametrization(module, "weight", p)
    return p


# --------------------------------------------------------------------------- training


def _trainable_suffix(model: nn.Module) -> tuple[Optional[nn.Module], nn.Module]:
    """(frozen prefix, rest) of an nn.Sequential whose first children hold no trainable
    parameter and behave the same in train and eval mode; (None, model) otherwise.

    When Algorithm 1 retrains only the layers after an encoded one, the prefix's output is the
    same at every epoch: computing it once makes retraining several times cheaper.
    """
    if not isinstance(model, nn.Sequential):
        return None, model
    children = list(model)
    cut = 0
    for child in children:
        if any(p.requires_grad for p in child.parameters()):
            break
        if any(isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)) for m in child.modules()):
            break
        cut += 1
    if cut == 0 or cut == len(children):
        return None, model
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])


@torch.no_grad()
def _forward_batched(module: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    was_training = module.training
    module.eval()
    try:
        return torch.cat([module(x[i: i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        module.train(was_training)


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install tqdm (or pass progress=False)") from None
    return tqdm(total=total, desc=desc, unit="batch", leave=False)


def train(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    weight_decay: float = 0.0,
    on_step: Optional[StepCallback] = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Train the parameters that require grad with Adam and softmax cross-entropy.

    The learning rate follows a half cosine from `lr` to 0 over all steps of this call; the
    data are reshuffled every epoch from `seed`, so a call is reproducible (same seed, same
    thread count). `on_step(step, total_steps)` runs after every optimizer step (dynamic network
    surgery updates its masks there). With `progress`, one tqdm bar per epoch. For an
    nn.Sequential whose leading children are frozen, their output is computed once.
    Returns the mean training loss of each epoch.
    """
    if int(epochs) < 0 or int(batch_size) < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    if x.shape[0] != y.shape[0] or y.dim() != 1:
        raise ValueError(f"x has {x.shape[0]} samples and y has shape {tuple(y.shape)}; need one label per sample")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: nothing to train")
    if epochs == 0 or x.shape[0] == 0:
        return []
    prefix, rest = _trainable_suffix(model)
    inputs = _forward_batched(prefix, x) if prefix is not None else x
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    total = steps_per_epoch * int(epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    generator = torch.Generator().manual_seed(int(seed))
    losses = []
    step = 0
    rest.train()
    for epoch in range(int(epochs)):
        order = torch.randperm(x.shape[0], generator=generator)
        bar = _progress_bar(steps_per_epoch, f"{desc} {epoch + 1}/{epochs}", progress)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size: (i + 1) * batch_size]
            loss = nn.functional.cross_entropy(rest(inputs[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running += float(loss.detach())
            if on_step is not None:
                on_step(step, total)
            if bar is not None:
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix(loss=f"{running / (i + 1):.4f}")
        if bar is not None:
            bar.close()
        losses.append(running / steps_per_epoch)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, x: ArrayLike, y: ArrayLike, *, batch_size: int = 2000) -> float:
    """Classification accuracy (fraction of correct argmax predictions), in eval mode."""
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError("no samples to evaluate")
    logits = _forward_batched(model, x, batch_size)
    return float((logits.argmax(dim=1) == y).double().mean())


# --------------------------------------------------------------------------- Algorithm 1


@dataclass(frozen=True)
class LayerSpec:
    """How Algorithm 1 treats one layer.

    name: module name ("fc1"). density: magnitude-prune to this fraction first (with
    `prune_epochs` of retraining at fixed masks), or None to keep the layer's current nonzeros
    (e.g. after `DynamicSurgery`). clusters: k-means clusters. cell_bits: t, or None to take it
    from fp_rate (`weightless.codec.choose_cell_bits`). arity: 3, 4 or "best" (encode both, keep
    the smaller; 4 is smaller at some sizes). finetune_epochs: centroid fine-tuning (with the
    later layers), at `finetune_lr` (default: algorithm1's lr). retrain_epochs: retraining of the
    later layers after the layer is frozen with its decoded weight.
    filter_seeds: encode with this many seeds (seed, seed + 1, ...) and keep the filter whose false
    positives raise the training loss least (on the first `selection_samples` training samples
    given to algorithm1). Which zero positions read back as false positives is a function of the
    seed, and on MNIST the accuracy before retraining varies by more than a point between seeds
    at the same t; trying seeds costs one encode and one forward pass each, and no bytes.
    """

    name: str
    clusters: int = 16
    cell_bits: Optional[int] = None
    fp_rate: Optional[float] = None
    arity: Union[int, str] = 3
    density: Optional[float] = None
    prune_epochs: int = 1
    finetune_epochs: int = 1
    retrain_epochs: int = 2
    finetune_lr: Optional[float] = None
    filter_seeds: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.arity not in (3, 4, "best"):
            raise ValueError(f"arity must be 3, 4 or 'best', got {self.arity!r}")
        if self.cell_bits is not None and self.fp_rate is not None:
            raise ValueError(f"layer {self.name!r}: give cell_bits or fp_rate, not both")
        for key in ("prune_epochs", "finetune_epochs", "retrain_epochs"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"layer {self.name!r}: {key} must be >= 0")
        if self.density is not None:
            _check_density(self.name, self.density)
        if int(self.filter_seeds) < 1:
            raise ValueError(f"layer {self.name!r}: filter_seeds must be >= 1, got {self.filter_seeds!r}")


@dataclass
class LayerResult:
    """One encoded layer: the `EncodedLayer`, the options that reproduce it with `encode_layer`
    (and `weightless.compress`), the clustered weight before encoding (what the .wl file
    re-encodes) and the accuracies around the step (None without evaluation data)."""

    name: str
    encoded: EncodedLayer
    options: dict[str, Any]
    clustered: np.ndarray = field(repr=False)
    accuracy_clustered: Optional[float] = None  # after clustering and centroid fine-tuning
    accuracy_encoded: Optional[float] = None  # with the decoded weight, before retraining
    accuracy_retrained: Optional[float] = None  # after retraining the later layers

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def density(self) -> float:
        return self.encoded.kept / self.encoded.size


def encode_module(model: nn.Module, name: str, *, clusters: Optional[int] = None, cell_bits: Optional[int] = None,
                  fp_rate: Optional[float] = None, arity: Union[int, str] = 3, seed: int = 0
                  ) -> tuple[EncodedLayer, dict[str, Any], np.ndarray]:
    """Encode a layer's current (pruned, clustered) weight with the core, without changing the model.

    The weight is taken as it is: its nonzeros are the keys and its distinct nonzero values the
    codebook, so it must already hold at most `clusters` distinct nonzero values (default: as
    many as it has, up to 2**16) for the encoding to be exact at the kept positions.
    Returns (layer, options for `encode_layer` / `compress`, the weight as numpy).
    """
    module = _module(model, name)
    w = module.weight.detach().cpu().numpy().astype(np.float32, copy=True)
    distinct = int(np.unique(w[w != 0]).size)
    if clusters is None:
        clusters = max(distinct, 1)
    if distinct > clusters:
        raise ValueError(f"layer {name!r} has {distinct} distinct nonzero weights, more than clusters={clusters}: "
                         "cluster it first (cluster_layer)")
    arities = (3, 4) if arity == "best" else (arity,)
    best: Optional[tuple[EncodedLayer, dict[str, Any]]] = None
    for a in arities:
        options = dict(clusters=int(clusters), seed=int(seed), arity=int(a))
        if cell_bits is not None:
            options["cell_bits"] = int(cell_bits)
        elif fp_rate is not None:
            options["fp_rate"] = float(fp_rate)
        layer = encode_layer(w, **options)
        if best is None or layer.nbytes < best[0].nbytes:
            best = (layer, options)
    assert best is not None
    return best[0], best[1], w


def _freeze_through(model: nn.Module, name: str) -> None:
    """requires_grad False for the parameters of `name` and of everything registered before it;
    True for the parameters after it (the later layers that Algorithm 1 retrains)."""
    prefix = name + "."
    seen = False
    for pname, p in model.named_parameters():
        inside = pname.startswith(prefix)
        if inside:
            seen = True
        if inside or not seen:
            p.requires_grad_(False)
        else:
            p.requires_grad_(not _is_parametrization_original_of_shared(model, pname))


def _is_parametrization_original_of_shared(model: nn.Module, pname: str) -> bool:
    """The ignored `original` of a SharedWeight parametrization never trains."""
    if not pname.endswith(".parametrizations.weight.original"):
        return False
    module = model.get_submodule(pname[: -len(".parametrizations.weight.original")])
    return any(isinstance(p, SharedWeight) for p in module.parametrizations.weight)


def algorithm1(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    x_eval: Optional[ArrayLike] = None,
    y_eval: Optional[ArrayLike] = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    selection_samples: int = 10000,
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
) -> list[LayerResult]:
    """The paper's Algorithm 1, layer by layer in the given order.

    For each layer: (optionally) magnitude-prune and retrain; cluster its nonzero weights and
    fine-tune the centroids together with the later layers; encode it in a Bloomier filter;
    replace its weight with the decoded one, false positives included, and freeze it (and every
    layer before it); retrain the later layers so they absorb the errors. The next layer then
    sees the errors of the ones before it.

    `selection_samples`: how many leading training samples judge the filter seeds of a layer
    with `filter_seeds` > 1 (LayerSpec). Parameters after the layer in `model.named_parameters()`
    order count as later layers (for an nn.Sequential, the layers after it). Masks on later
    layers (from pruning or surgery) stay in force while they retrain. Afterwards every parameter
    is trainable again except the encoded weights and the biases of the encoded layers, and no
    parametrization is left on encoded layers. Evaluation data, if given, only measures the
    accuracies reported in each `LayerResult`; nothing is chosen on it.
    """
    if not layers:
        raise ValueError("algorithm1 needs at least one layer")
    names = [spec.name for spec in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"a layer is named twice in {names}")
    for spec in layers:
        _module(model, spec.name)
    if (x_eval is None) != (y_eval is None):
        raise ValueError("give both x_eval and y_eval, or neither")
    say = log or (lambda message: None)

    def acc() -> Optional[float]:
        return None if x_eval is None else evaluate(model, x_eval, y_eval)

    results: list[LayerResult] = []
    encoded_names: list[str] = []
    for i, spec in enumerate(layers):
        step_seed = seed + 1000 * (i + 1)
        if spec.density is not None:
            bake(model, [spec.name])
            magnitude_prune(model, {spec.name: spec.density})
            _train_unfrozen(model, encoded_names, x_train, y_train, spec.prune_epochs, lr, batch_size, step_seed,
                            progress, f"prune {spec.name}")
        cluster_layer(model, spec.name, spec.clusters, seed=spec.seed)
        _freeze_through(model, spec.name)
        shared = _module(model, spec.name).parametrizations.weight[0]
        shared.centroids.requires_grad_(True)
        if spec.finetune_epochs and any(p.requires_grad for p in model.parameters()):
            train(model, x_train, y_train, epochs=spec.finetune_epochs, lr=spec.finetune_lr or lr,
                  batch_size=batch_size, seed=step_seed + 1, progress=progress, desc=f"centroids {spec.name}")
        bake(model, [spec.name])
        accuracy_clustered = acc()

        layer, options, clustered = _encode_best_seed(model, spec, x_train[:selection_samples],
                                                      y_train[:selection_samples])
        module = _module(model, spec.name)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(layer.decode()))
        _freeze_through(model, spec.name)
        accuracy_encoded = acc()
        say(f"{spec.name}: {layer.kept} kept ({layer.kept / layer.size:.2%}), {len(layer.codebook)} clusters, "
            f"t = {layer.cell_bits}, arity {options['arity']}, {layer.false_positives} false positives, "
            f"{layer.nbytes} bytes")
        if spec.retrain_epochs and any(p.requires_grad for p in model.parameters()):
            train(model, x_train, y_train, epochs=spec.retrain_epochs, lr=lr, batch_size=batch_size,
                  seed=step_seed + 2, progress=progress, desc=f"retrain after {spec.name}")
        accuracy_retrained = acc()
        encoded_names.append(spec.name)
        results.append(LayerResult(spec.name, layer, options, clustered, accuracy_clustered, accuracy_encoded,
                                   accuracy_retrained))

    # Everything trainable again but the encoded layers (weights and biases).
    frozen = tuple(f"{n}." for n in encoded_names)
    for pname, p in model.named_parameters():
        p.requires_grad_(not pname.startswith(frozen) and not _is_parametrization_original_of_shared(model, pname))
    return results


def _split_before(model: nn.Module, name: str) -> tuple[Optional[nn.Module], nn.Module]:
    """(the children before layer `name`, the rest) of an nn.Sequential with `name` as a direct
    child; (None, model) otherwise. Lets a seed search compute the layer's input only once."""
    if isinstance(model, nn.Sequential):
        names = [n for n, _ in model.named_children()]
        if name in names and names.index(name) > 0:
            i = names.index(name)
            return nn.Sequential(*list(model)[:i]), nn.Sequential(*list(model)[i:])
    return None, model


@torch.no_grad()
def _encode_best_seed(model: nn.Module, spec: LayerSpec, x: ArrayLike, y: ArrayLike
                      ) -> tuple[EncodedLayer, dict[str, Any], np.ndarray]:
    """`encode_module` with seeds spec.seed .. spec.seed + filter_seeds - 1 (each arity asked for);
    the smallest encoding wins, and among equal sizes the lowest training loss with the decoded
    weight in place (the false positives included). The model's weight is left as it was."""
    module = _module(model, spec.name)
    original = module.weight.detach().clone()
    arities = (3, 4) if spec.arity == "best" else (spec.arity,)
    seeds = range(spec.seed, spec.seed + int(spec.filter_seeds))
    if len(arities) * len(seeds) == 1:
        return encode_module(model, spec.name, clusters=spec.clusters, cell_bits=spec.cell_bits, fp_rate=spec.fp_rate,
                             arity=spec.arity, seed=spec.seed)
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    prefix, rest = _split_before(model, spec.name)
    inputs = _forward_batched(prefix, x) if prefix is not None else x
    best = None
    try:
        for arity in arities:
            for seed in seeds:
                module.weight.copy_(original)  # encode the clustered weight, not the last decoded one
                layer, options, clustered = encode_module(model, spec.name, clusters=spec.clusters,
                                                          cell_bits=spec.cell_bits, fp_rate=spec.fp_rate,
                                                          arity=arity, seed=seed)
                module.weight.copy_(torch.from_numpy(layer.decode()))
                loss = float(nn.functional.cross_entropy(_forward_batched(rest, inputs), y))
                key = (layer.nbytes, loss)
                if best is None or key < best[0]:
                    best = (key, (layer, options, clustered))
    finally:
        module.weight.copy_(original)
    return best[1]


def _train_unfrozen(model, encoded_names, x, y, epochs, lr, batch_size, seed, progress, desc) -> None:
    """Train every parameter except those of already encoded layers."""
    if not epochs:
        return
    frozen = tuple(f"{n}." for n in encoded_names)
    for pname, p in model.named_parameters():
        p.requires_grad_(not pname.startswith(frozen))
    train(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress, desc=desc)


# --------------------------------------------------------------------------- export


def _state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    state = {}
    for k, v in model.state_dict().items():
        if ".parametrizations." in k:
            raise ValueError(f"{k}: the model still has parametrizations (masks or shared weights); call bake() first")
        state[k] = v.detach().cpu().numpy()
    return state


def export_wl(model: nn.Module, results: Sequence[LayerResult], path: Union[str, os.PathLike], *,
              overwrite: bool = False, raw_dtype: Optional[str] = None) -> CompressionReport:
    """Write the model as a .wl whole-model file with `weightless.compress` (the CLI's container).

    The encoded layers are stored as their filters (each re-encoded from its clustered weight
    with the recorded options, which is deterministic, so the file holds the very filter the
    model was retrained around); every other tensor is stored exactly. `raw_dtype="float16"`
    stores the other floating tensors at half precision (the file is what is evaluated, so the
    effect on accuracy is measured, not assumed). Afterwards the file is read back and every
    encoded layer checked to decode to the model's in-memory weight bit for bit.
    """
    if raw_dtype not in (None, "float16", "float32"):
        raise ValueError(f"raw_dtype must be None, 'float16' or 'float32', got {raw_dtype!r}")
    state = _state_numpy(model)
    layers: dict[str, dict[str, Any]] = {}
    for r in results:
        name = r.weight_name
        if name not in state:
            raise ValueError(f"the model has no tensor {name!r} for encoded layer {r.name!r}")
        if not np.array_equal(state[name], r.encoded.decode()):
            raise ValueError(f"{name}: the model's weight is not the decoded layer (changed after algorithm1?)")
        state[name] = r.clustered
        layers[name] = dict(r.options)
    if raw_dtype is not None:
        for k, v in state.items():
            if k not in layers and v.dtype.kind == "f":
                state[k] = v.astype(raw_dtype)
    report = compress(state, path, layers=layers, overwrite=overwrite)
    restored = decompress(path)
    for r in results:
        if not np.array_equal(restored[r.weight_name], r.encoded.decode()):
            raise RuntimeError(f"{r.weight_name} decoded from {os.fspath(path)} differs from the model's weight; "
                               "the encoding is not deterministic (a core bug)")
    return report


def load_wl(model: nn.Module, path: Union[str, os.PathLike]) -> nn.Module:
    """Load a .wl file (decoded by `weightless.decompress`) into a model with the same state keys."""
    state = decompress(path)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    extra = sorted(set(state) - set(ours))
    if missing or extra:
        raise ValueError(f"{os.fspath(path)} does not match the model: missing {missing}, unexpected {extra}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)).to(ours[k].dtype) for k, v in state.items()})
    return model
