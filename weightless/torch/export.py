"""Export to and load from a .wl whole-model file (`weightless.compress` / `weightless.decompress`).

`save` / `load_state_dict` are the one-call round trip for any model or state dict:

    weightless.torch.save(model, "m.wl", sparsity=0.9)
    model.load_state_dict(weightless.torch.load_state_dict("m.wl"))

`export_wl` / `load_wl` write and read the result of `algorithm1` (the very filters the model was
retrained around).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..container import CompressionReport, compress, decompress
from .algorithm import LayerResult


def _state_numpy(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    items = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    if not isinstance(items, Mapping):
        raise TypeError(f"expected a torch.nn.Module or a state dict, got {type(model_or_state).__name__}")
    state = {}
    for k, v in items.items():
        if ".parametrizations." in k:
            raise ValueError(f"{k}: the model still has parametrizations (masks or shared weights); call bake() first")
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{k}: expected a tensor, got {type(v).__name__}")
        if v.dtype == torch.bfloat16:
            raise ValueError(f"{k}: bfloat16 tensors are not supported yet")
        state[k] = v.detach().cpu().numpy()
    return state


def save(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike, *,
         overwrite: bool = False, **options: Any) -> CompressionReport:
    """Compress a model (its `state_dict()`) or a state dict of tensors to a .wl file.

    `options` are `weightless.compress`'s (layers, sparsity, clusters, cell_bits, fp_rate,
    executor, ...); every tensor not encoded is stored bit for bit, in its dtype.
    """
    return compress(_state_numpy(model_or_state_dict), path, overwrite=overwrite, **options)


def load_state_dict(path: str | os.PathLike, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a .wl file as a state dict of torch tensors, each in its stored dtype, on
    `device` (default: the CPU), ready for `model.load_state_dict`."""
    return {k: torch.from_numpy(np.array(v)).to(device) if device is not None else torch.from_numpy(np.array(v))
            for k, v in decompress(path).items()}


def export_wl(model: nn.Module, results: Sequence[LayerResult], path: str | os.PathLike, *,
              overwrite: bool = False, raw_dtype: str | None = None) -> CompressionReport:
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
        # The filter itself, whatever is smaller: the model was retrained around its false positives.
        layers[name] = {**r.options, "codec": "bloomier"}
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


def load_wl(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a .wl file (decoded by `weightless.decompress`) into a model with the same state keys."""
    state = decompress(path)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    extra = sorted(set(state) - set(ours))
    if missing or extra:
        raise ValueError(f"{os.fspath(path)} does not match the model: missing {missing}, unexpected {extra}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)).to(ours[k].dtype) for k, v in state.items()})
    return model
