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
              overwrite: bool = False, raw_dtype: str | None = None,
              layers: Mapping[str, Mapping[str, Any]] | None = None, metadata: bool = True) -> CompressionReport:
    """Write the model as a .wl whole-model file with `weightless.compress` (the CLI's container).

    The encoded layers are stored as Algorithm 1 encoded them, filter or exact codec (each
    re-encoded from its clustered weight with the recorded options, which is deterministic, so
    the file holds the very filter the model was retrained around); every other tensor is stored
    exactly, or as `layers` says: name -> `compress` options for further tensors to encode (e.g.
    biases already clustered: `{"fc1.bias": {"codec": "exact", "clusters": 8}}`; each must decode
    to the model's tensor, which is checked). `raw_dtype="float16"` stores the other floating
    tensors at half precision (the file is what is evaluated, so the effect on accuracy is
    measured, not assumed). `metadata=False` leaves out the file's JSON metadata (options,
    errors, baselines: about 1.4 kB for LeNet-5, which a record file need not carry). Afterwards
    the file is read back and every encoded tensor checked to decode to the model's in-memory
    tensor bit for bit.
    """
    if raw_dtype not in (None, "float16", "float32"):
        raise ValueError(f"raw_dtype must be None, 'float16' or 'float32', got {raw_dtype!r}")
    state = _state_numpy(model)
    chosen: dict[str, dict[str, Any]] = {}
    for r in results:
        name = r.weight_name
        if name not in state:
            raise ValueError(f"the model has no tensor {name!r} for encoded layer {r.name!r}")
        if not np.array_equal(state[name], r.encoded.decode()):
            raise ValueError(f"{name}: the model's weight is not the decoded layer (changed after algorithm1?)")
        state[name] = r.clustered
        # The codec Algorithm 1 chose, whatever compress would pick: the model was retrained around it.
        chosen[name] = {**r.options, "codec": r.codec}
    for name, options in (layers or {}).items():
        if name in chosen or name not in state:
            problem = "an Algorithm 1 layer" if name in chosen else "not in the model"
            raise ValueError(f"layers: {name!r} is {problem}")
        chosen[name] = dict(options)
    expected = {name: state[name] for name in chosen if name not in {r.weight_name for r in results}}
    expected.update({r.weight_name: r.encoded.decode() for r in results})
    if raw_dtype is not None:
        for k, v in state.items():
            if k not in chosen and v.dtype.kind == "f":
                state[k] = v.astype(raw_dtype)
    report = compress(state, path, layers=chosen, overwrite=overwrite, metadata=metadata)
    restored = decompress(path)
    for name, tensor in expected.items():
        if not np.array_equal(restored[name], tensor):
            raise RuntimeError(f"{name} decoded from {os.fspath(path)} differs from the model's tensor; "
                               + ("the encoding is not deterministic (a core bug)" if name not in (layers or {})
                                  else "give it as already clustered, with its number of clusters"))
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
