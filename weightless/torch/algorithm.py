"""The paper's Algorithm 1: prune, cluster, encode and freeze layer by layer, retraining the later layers."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import nn

from ..codec import EncodedLayer, encode_layer
from ..exact import ExactLayer
from ..exact import encode_clustered as encode_exact_clustered
from ._common import ArrayLike, _as_tensor, _check_density, _forward_batched, _module, _weight, _weight_parametrizations
from .masks import bake, magnitude_prune
from .sharing import SharedWeight, cluster_layer
from .training import evaluate, train

#: How Algorithm 1 stores a layer: the Bloomier filter (false positives the later layers are
#: retrained around), the exact codec (no false positives), or whichever is smaller at the
#: accuracy asked, measured on held-out training data.
CODECS = ("bloomier", "exact", "auto")

#: A layer's encoding: a Bloomier filter or an exact codec payload.
Encoding = Union[EncodedLayer, ExactLayer]


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
    cell_bits: int | tuple[int, ...] | None = None
    fp_rate: float | None = None
    arity: int | str = 4
    density: float | None = None
    prune_epochs: int = 1
    finetune_epochs: int = 1
    retrain_epochs: int = 2
    finetune_lr: float | None = None
    filter_seeds: int = 1
    seed: int = 0
    codec: str = "bloomier"
    accuracy_tolerance: float = 0.001

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"layer {self.name!r}: codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if isinstance(self.cell_bits, tuple):
            if self.codec != "auto" or not self.cell_bits:
                raise ValueError(f"layer {self.name!r}: several cell_bits are candidates for codec='auto' only")
            if self.fp_rate is not None:
                raise ValueError(f"layer {self.name!r}: give cell_bits or fp_rate, not both")
        if not 0.0 <= self.accuracy_tolerance <= 1.0:
            raise ValueError(f"layer {self.name!r}: accuracy_tolerance must be in [0, 1], "
                             f"got {self.accuracy_tolerance!r}")
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
    """One encoded layer: its encoding (an `EncodedLayer` filter or an `ExactLayer`), the options
    that reproduce it with `weightless.compress` (`codec` among them), the clustered weight
    before encoding (what the .wl file re-encodes) and the accuracies around the step (None
    without evaluation data). `candidates`: for codec="auto", every encoding tried, with its
    bytes in a .wl file (`file_nbytes`) and held-out accuracy after retraining."""

    name: str
    encoded: Encoding
    options: dict[str, Any]
    clustered: np.ndarray = field(repr=False)
    accuracy_clustered: float | None = None  # after clustering and centroid fine-tuning
    accuracy_encoded: float | None = None  # with the decoded weight, before retraining
    accuracy_retrained: float | None = None  # after retraining the later layers
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def codec(self) -> str:
        return "exact" if isinstance(self.encoded, ExactLayer) else "bloomier"

    @property
    def false_positives(self) -> int:
        return self.encoded.false_positives if isinstance(self.encoded, EncodedLayer) else 0

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
    x_holdout: ArrayLike | None = None,
    y_holdout: ArrayLike | None = None,
    selection_samples: int = 10000,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
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
    accuracies reported in each `LayerResult`; nothing is chosen on it. Held-out data
    (`x_holdout`, `y_holdout`: training data kept out of `x_train`) is what layers with
    codec="auto" choose their encoding on. `augment` is passed to every `train` call.
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
    if (x_holdout is None) != (y_holdout is None):
        raise ValueError("give both x_holdout and y_holdout, or neither")
    auto = [spec.name for spec in layers if spec.codec == "auto"]
    if auto and x_holdout is None:
        raise ValueError(f"codec='auto' (layers {', '.join(auto)}) chooses on held-out data: give x_holdout, y_holdout")
    say = log or (lambda message: None)

    def acc() -> float | None:
        # Both or neither (checked above); testing both lets the type checker see it.
        return None if x_eval is None or y_eval is None else evaluate(model, x_eval, y_eval)

    def fit(epochs: int, step_seed: int, desc: str, rate: float | None = None) -> None:
        """Train what requires grad (nothing to do if nothing does)."""
        if epochs and any(p.requires_grad for p in model.parameters()):
            train(model, x_train, y_train, epochs=epochs, lr=rate or lr, batch_size=batch_size, seed=step_seed,
                  augment=augment, progress=progress, desc=desc)

    results: list[LayerResult] = []
    encoded_names: list[str] = []
    for i, spec in enumerate(layers):
        step_seed = seed + 1000 * (i + 1)
        if spec.density is not None:
            bake(model, [spec.name])
            magnitude_prune(model, {spec.name: spec.density})
            _unfreeze_all_but(model, encoded_names)
            fit(spec.prune_epochs, step_seed, f"prune {spec.name}")
        shared = cluster_layer(model, spec.name, spec.clusters, seed=spec.seed)
        _freeze_through(model, spec.name)
        shared.centroids.requires_grad_(True)
        fit(spec.finetune_epochs, step_seed + 1, f"centroids {spec.name}", spec.finetune_lr)
        bake(model, [spec.name])
        accuracy_clustered = acc()

        if spec.codec == "auto":
            assert x_holdout is not None and y_holdout is not None  # checked above
            layer, options, clustered, candidates, accuracy_encoded = _choose_codec(
                model, spec, x_train[:selection_samples], y_train[:selection_samples], x_holdout, y_holdout,
                functools.partial(fit, spec.retrain_epochs, step_seed + 2), acc)
        else:
            layer, options, clustered = _encode(model, spec, x_train[:selection_samples], y_train[:selection_samples])
            candidates = []
            _freeze_in(model, spec.name, layer)
            accuracy_encoded = acc()
            fit(spec.retrain_epochs, step_seed + 2, f"retrain after {spec.name}")
        say(f"{spec.name}: {layer.kept} kept ({layer.kept / layer.size:.2%}), {len(layer.codebook)} clusters, "
            + (f"t = {layer.cell_bits}, arity {options['arity']}, {layer.false_positives} false positives, "
               if isinstance(layer, EncodedLayer) else "exact, ")
            + f"{file_nbytes(layer)} bytes")
        accuracy_retrained = acc()
        encoded_names.append(spec.name)
        results.append(LayerResult(spec.name, layer, options, clustered, accuracy_clustered, accuracy_encoded,
                                   accuracy_retrained, candidates))

    # Everything trainable again but the encoded layers (weights and biases).
    frozen = tuple(f"{n}." for n in encoded_names)
    for pname, p in model.named_parameters():
        p.requires_grad_(not pname.startswith(frozen) and not _is_parametrization_original_of_shared(model, pname))
    return results


def _freeze_in(model: nn.Module, name: str, layer: Encoding) -> None:
    """Replace the layer's weight with its decoded encoding (false positives included) and freeze
    it and everything before it."""
    with torch.no_grad():
        _weight(_module(model, name)).copy_(torch.from_numpy(layer.decode()))
    _freeze_through(model, name)


def _encode(model: nn.Module, spec: LayerSpec, x: ArrayLike, y: ArrayLike
            ) -> tuple[Encoding, dict[str, Any], np.ndarray]:
    """The layer's clustered weight encoded as `spec.codec` says ("bloomier" or "exact"), with
    the `weightless.compress` options that reproduce it (codec included)."""
    if spec.codec == "exact":
        w = _weight(_module(model, spec.name)).detach().cpu().numpy().astype(np.float32, copy=True)
        flat = w.reshape(-1)
        positions = np.flatnonzero(flat)
        codebook, codes = np.unique(flat[positions], return_inverse=True)
        if codebook.size > spec.clusters:
            raise ValueError(f"layer {spec.name!r} has {codebook.size} distinct nonzero weights, "
                             f"more than clusters={spec.clusters}")
        layer = encode_exact_clustered(positions, codes.reshape(-1), w.shape, codebook)
        return layer, {"clusters": max(int(codebook.size), 1), "seed": int(spec.seed), "codec": "exact"}, w
    filtered, options, clustered = _encode_best_seed(model, spec, x, y)
    return filtered, {**options, "codec": "bloomier"}, clustered


def _choose_codec(model: nn.Module, spec: LayerSpec, x_select: ArrayLike, y_select: ArrayLike, x_holdout: ArrayLike,
                  y_holdout: ArrayLike, retrain: Callable[[str], None], accuracy: Callable[[], float | None]
                  ) -> tuple[Encoding, dict[str, Any], np.ndarray, list[dict[str, Any]], float | None]:
    """codec="auto": the exact encoding and every smaller filter candidate, each frozen in with
    the later layers retrained (`retrain(description)`) from the same state; the smallest whose
    held-out accuracy is within `spec.accuracy_tolerance` of the exact one's wins. Filter seeds
    are judged on (x_select, y_select). The model is left as the winner retrained it. Returns
    (encoding, options, clustered weight, candidates, accuracy with the winner frozen in before
    retraining)."""
    start = copy.deepcopy(model.state_dict())
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}

    def try_encoding(layer: Encoding) -> tuple[float, float | None, dict[str, torch.Tensor]]:
        model.load_state_dict(start)
        for n, p in model.named_parameters():
            p.requires_grad_(trainable[n])
        _freeze_in(model, spec.name, layer)
        before = accuracy()
        retrain(f"retrain after {spec.name} ({_describe(layer)})")
        return evaluate(model, x_holdout, y_holdout), before, copy.deepcopy(model.state_dict())

    exact, exact_options, clustered = _encode(model, dataclasses.replace(spec, codec="exact", cell_bits=None),
                                              x_select, y_select)
    reference, before, state = try_encoding(exact)
    tried = [{"codec": "exact", "bytes": file_nbytes(exact), "holdout_accuracy": reference}]
    best: tuple[Encoding, dict[str, Any], float | None, dict[str, torch.Tensor]] = (exact, exact_options, before,
                                                                                       state)
    cell_bits = spec.cell_bits if isinstance(spec.cell_bits, tuple) else (spec.cell_bits,)
    filters = []
    for t in cell_bits:
        model.load_state_dict(start)
        filters.append(_encode(model, dataclasses.replace(spec, codec="bloomier", cell_bits=t), x_select,
                               y_select)[:2])
    for layer, options in sorted(filters, key=lambda f: f[0].nbytes):
        assert isinstance(layer, EncodedLayer)
        row: dict[str, Any] = {"codec": "bloomier", "cell_bits": layer.cell_bits, "bytes": layer.nbytes,
                               "false_positives": layer.false_positives}
        if layer.nbytes < file_nbytes(best[0]):
            held_out, before, state = try_encoding(layer)
            row["holdout_accuracy"] = held_out
            if held_out >= reference - spec.accuracy_tolerance:
                best = (layer, options, before, state)
        tried.append(row)
    model.load_state_dict(best[3])
    _freeze_through(model, spec.name)
    return best[0], best[1], clustered, tried, best[2]


def file_nbytes(encoding: Encoding) -> int:
    """Bytes of the encoding's payload in a .wl file: `nbytes` of a filter, `payload_nbytes` of an
    exact layer (stored headless, its shape and CRC-32 in the directory)."""
    return encoding.payload_nbytes if isinstance(encoding, ExactLayer) else encoding.nbytes


def _describe(layer: Encoding) -> str:
    return f"filter t = {layer.cell_bits}" if isinstance(layer, EncodedLayer) else "exact"


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
    cell_bits = spec.cell_bits
    assert not isinstance(cell_bits, tuple)  # candidates are for codec="auto", which calls this with one t each
    module = _module(model, spec.name)
    original = _weight(module).detach().clone()
    arities = (3, 4) if spec.arity == "best" else (spec.arity,)
    seeds = range(spec.seed, spec.seed + int(spec.filter_seeds))
    if len(arities) * len(seeds) == 1:
        return encode_module(model, spec.name, clusters=spec.clusters, cell_bits=cell_bits, fp_rate=spec.fp_rate,
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
                                                          cell_bits=cell_bits, fp_rate=spec.fp_rate,
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


def _unfreeze_all_but(model: nn.Module, encoded_names: Sequence[str]) -> None:
    """Every parameter trainable except those of already encoded layers."""
    frozen = tuple(f"{n}." for n in encoded_names)
    for pname, p in model.named_parameters():
        p.requires_grad_(not pname.startswith(frozen))
