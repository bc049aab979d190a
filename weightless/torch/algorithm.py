"""The paper's Algorithm 1: prune, cluster, encode and freeze layer by layer, retraining the later layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..codec import EncodedLayer, encode_layer
from ._common import ArrayLike, _as_tensor, _check_density, _forward_batched, _module, _weight, _weight_parametrizations
from .masks import bake, magnitude_prune
from .sharing import SharedWeight, cluster_layer
from .training import evaluate, train


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
    cell_bits: int | None = None
    fp_rate: float | None = None
    arity: int | str = 4
    density: float | None = None
    prune_epochs: int = 1
    finetune_epochs: int = 1
    retrain_epochs: int = 2
    finetune_lr: float | None = None
    filter_seeds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
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
    accuracy_clustered: float | None = None  # after clustering and centroid fine-tuning
    accuracy_encoded: float | None = None  # with the decoded weight, before retraining
    accuracy_retrained: float | None = None  # after retraining the later layers

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def density(self) -> float:
        return self.encoded.kept / self.encoded.size


def encode_module(model: nn.Module, name: str, *, clusters: int | None = None, cell_bits: int | None = None,
                  fp_rate: float | None = None, arity: int | str = 4, seed: int = 0
                  ) -> tuple[EncodedLayer, dict[str, Any], np.ndarray]:
    """Encode a layer's current (pruned, clustered) weight with the core, without changing the model.

    The weight is taken as it is: its nonzeros are the keys and its distinct nonzero values the
    codebook, so it must already hold at most `clusters` distinct nonzero values (default: as
    many as it has, up to 2**16) for the encoding to be exact at the kept positions.
    Returns (layer, options for `encode_layer` / `compress`, the weight as numpy).
    """
    module = _module(model, name)
    w = _weight(module).detach().cpu().numpy().astype(np.float32, copy=True)
    distinct = int(np.unique(w[w != 0]).size)
    if clusters is None:
        clusters = max(distinct, 1)
    if distinct > clusters:
        raise ValueError(f"layer {name!r} has {distinct} distinct nonzero weights, more than clusters={clusters}: "
                         "cluster it first (cluster_layer)")
    arities = (3, 4) if arity == "best" else (arity,)
    best: tuple[EncodedLayer, dict[str, Any]] | None = None
    for a in arities:
        options: dict[str, Any] = dict(clusters=int(clusters), seed=int(seed), arity=int(a))
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
    return any(isinstance(p, SharedWeight) for p in _weight_parametrizations(module))


def algorithm1(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    x_eval: ArrayLike | None = None,
    y_eval: ArrayLike | None = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    selection_samples: int = 10000,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
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

    def acc() -> float | None:
        # Both or neither (checked above); testing both lets the type checker see it.
        return None if x_eval is None or y_eval is None else evaluate(model, x_eval, y_eval)

    results: list[LayerResult] = []
    encoded_names: list[str] = []
    for i, spec in enumerate(layers):
        step_seed = seed + 1000 * (i + 1)
        if spec.density is not None:
            bake(model, [spec.name])
            magnitude_prune(model, {spec.name: spec.density})
            _train_unfrozen(model, encoded_names, x_train, y_train, spec.prune_epochs, lr, batch_size, step_seed,
                            progress, f"prune {spec.name}")
        shared = cluster_layer(model, spec.name, spec.clusters, seed=spec.seed)
        _freeze_through(model, spec.name)
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
            _weight(module).copy_(torch.from_numpy(layer.decode()))
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


def _split_before(model: nn.Module, name: str) -> tuple[nn.Module | None, nn.Module]:
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
    original = _weight(module).detach().clone()
    arities = (3, 4) if spec.arity == "best" else (spec.arity,)
    seeds = range(spec.seed, spec.seed + int(spec.filter_seeds))
    if len(arities) * len(seeds) == 1:
        return encode_module(model, spec.name, clusters=spec.clusters, cell_bits=spec.cell_bits, fp_rate=spec.fp_rate,
                             arity=spec.arity, seed=spec.seed)
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    prefix, rest = _split_before(model, spec.name)
    inputs = _forward_batched(prefix, x) if prefix is not None else x
    best: tuple[tuple[int, float], tuple[EncodedLayer, dict[str, Any], np.ndarray]] | None = None
    try:
        for arity in arities:
            for seed in seeds:
                _weight(module).copy_(original)  # encode the clustered weight, not the last decoded one
                layer, options, clustered = encode_module(model, spec.name, clusters=spec.clusters,
                                                          cell_bits=spec.cell_bits, fp_rate=spec.fp_rate,
                                                          arity=arity, seed=seed)
                _weight(module).copy_(torch.from_numpy(layer.decode()))
                loss = float(nn.functional.cross_entropy(_forward_batched(rest, inputs), y))
                key = (layer.nbytes, loss)
                if best is None or key < best[0]:
                    best = (key, (layer, options, clustered))
    finally:
        _weight(module).copy_(original)
    assert best is not None  # at least two candidates were tried
    return best[1]


def _train_unfrozen(model: nn.Module, encoded_names: Sequence[str], x: ArrayLike, y: ArrayLike, epochs: int, lr: float,
                    batch_size: int, seed: int, progress: bool, desc: str) -> None:
    """Train every parameter except those of already encoded layers."""
    if not epochs:
        return
    frozen = tuple(f"{n}." for n in encoded_names)
    for pname, p in model.named_parameters():
        p.requires_grad_(not pname.startswith(frozen))
    train(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress, desc=desc)
