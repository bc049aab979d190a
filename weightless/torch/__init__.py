"""PyTorch integration: pruning with retraining, dynamic network surgery, weight sharing with
centroid fine-tuning, and the paper's Algorithm 1 with retraining, exported as a .wl file.

Import it explicitly (`import weightless.torch`); the rest of the package never imports torch.
Install with the `torch` extra (`pip install "weightless[torch]"`, pinned to a CPU build).

Why retraining matters: a Bloomier filter returns a random cluster index for a small fraction of
the pruned positions (false positives). Without retraining they cost accuracy and push t up; the
paper's compression comes from very sparse layers (dynamic network surgery) plus retraining the
layers after an encoded one around its errors, which makes a small t affordable.

    model = weightless.experiments.models.lenet_300_100()
    train(model, x, y, epochs=10)
    dns = DynamicSurgery(model, {"fc1": 0.02})       # masks follow |w|; pruned weights may return
    train(model, x, y, epochs=8, on_step=dns.on_step)
    dns.finish()                                       # fixed masks from here on
    results = algorithm1(model, [LayerSpec("fc1", clusters=8, cell_bits=10)], x, y)
    export_wl(model, results, "model.wl")              # weightless decompress / wl-decode read it

Any model or state dict, in one call each way:

    weightless.torch.save(model, "m.wl", sparsity=0.9, clusters=16)
    model.load_state_dict(weightless.torch.load_state_dict("m.wl"))

Layers are named by their module name ("fc1", "features.0"); the weight is `<name>.weight`.
Every function runs on the CPU and is reproducible for a given seed and thread count.
"""

from __future__ import annotations

from typing import Any

from .algorithm import LayerResult, LayerSpec, algorithm1, encode_module
from .export import export_wl, load_state_dict, load_wl, save
from .masks import MaskedWeight, bake, density, keep_sparsity, magnitude_prune
from .sharing import SharedWeight, cluster_layer
from .surgery import DynamicSurgery
from .training import evaluate, train


def __getattr__(name: str) -> Any:
    # The paper's LeNets moved to weightless.experiments.models (the experiments live apart from
    # the library); the old names still resolve, imported only when used, so importing
    # weightless.torch never imports the experiments.
    if name in ("lenet_300_100", "lenet_5"):
        from ..experiments import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "save",
    "load_state_dict",
    "train",
    "evaluate",
    "density",
]
