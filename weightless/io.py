"""Model files in and out: numpy .npz, safetensors and PyTorch state dicts, chosen by extension.

A model here is a state dict: an ordered mapping from tensor name to numpy array. Reading checks
the file and raises FileNotFoundError or ValueError naming the path and the problem; writing is
atomic (a temporary file in the same directory, then a rename) and refuses to replace an
existing file unless asked to.

Only numpy is needed for .npz; safetensors and torch are imported when their format is used.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np

__all__ = ["load_state", "save_state", "model_format", "check_format", "write_atomically", "FORMATS"]

PathLike = Union[str, "os.PathLike[str]"]

#: File extension (lower case) -> format name.
FORMATS = {".npz": "npz", ".safetensors": "safetensors", ".pt": "pt", ".pth": "pt"}


def model_format(path: PathLike) -> str:
    """The format of a model file from its extension: "npz", "safetensors" or "pt"."""
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix == ".wl":
        raise ValueError(f"{path}: a .wl file is a compressed model, not a state dict (decompress it first)")
    known = ", ".join(sorted(FORMATS))
    raise ValueError(f"{path}: unknown model format {suffix or '(no extension)'!r} (expected one of {known})")


def check_format(path: PathLike, *, writing: bool = False) -> str:
    """`model_format(path)`, also importing the package the format needs (ImportError if missing).

    Lets a caller fail before a long computation whose result it could not save.
    """
    fmt = model_format(path)
    verb = "writing" if writing else "reading"
    if fmt == "safetensors":
        _safetensors_module()
    elif fmt == "pt":
        _torch(verb)
    return fmt


def _check_readable(path: PathLike) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a model file")


def load_state(path: PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a model file, in file order (safetensors files store them sorted)."""
    fmt = model_format(path)
    _check_readable(path)
    if fmt == "npz":
        return _load_npz(path)
    if fmt == "safetensors":
        return _load_safetensors(path)
    return _load_torch(path)


def save_state(state: Mapping[str, np.ndarray], path: PathLike, *, overwrite: bool = False) -> None:
    """Write a state dict to `path` in the format of its extension, atomically."""
    fmt = model_format(path)
    arrays = _as_arrays(state)
    writer = {"npz": _save_npz, "safetensors": _save_safetensors, "pt": _save_torch}[fmt]
    write_atomically(path, lambda tmp: writer(arrays, tmp), overwrite=overwrite)


def _as_arrays(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of names to arrays, got {type(state).__name__}")
    out = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise ValueError(f"tensor names must be strings, got {name!r}")
        out[name] = c_contiguous(value)
    return out


def c_contiguous(value) -> np.ndarray:
    """`value` as a C-contiguous array, copied only if needed (np.ascontiguousarray makes 0-d arrays 1-d)."""
    a = np.asarray(value)
    return a if a.flags.c_contiguous else a.copy(order="C")


# --------------------------------------------------------------------------- atomic writes


def write_atomically(path: PathLike, write: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Call `write(tmp)` on a fresh file next to `path`, then rename it to `path`.

    The rename is atomic, so readers see the old file or the complete new one, never a partial
    one; on any failure (including Ctrl-C) the temporary file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{path}: directory {directory} does not exist")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    # Created with open(..., "x") rather than mkstemp so the file gets the usual permissions
    # (mkstemp's are 0600, which the rename would carry over to the output).
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb"):
            pass
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # Checked again because the work may take a while; a file created in between is kept.
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- .npz


def _load_npz(path: PathLike) -> dict[str, np.ndarray]:
    # np.load would read anything else as a single .npy array or try to unpickle it.
    with open(path, "rb") as f:
        if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip's first entry, or an empty zip
            raise ValueError(f"{path}: not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = {}
            for name in npz.files:
                value = npz[name]
                if not isinstance(value, np.ndarray):  # a zip member that is not a .npy file
                    raise ValueError(f"member {name!r} is not a numpy array")
                state[name] = value
            return state
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a valid .npz file ({e})") from None


def _save_npz(state: Mapping[str, np.ndarray], tmp: str) -> None:
    # What np.savez does, written out because savez's keyword arguments would clash with tensors
    # named "file" or "allow_pickle", and because it appends ".npz" to names without it.
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in state.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                try:
                    np.lib.format.write_array(member, value, allow_pickle=False)
                except ValueError as e:
                    raise ValueError(f"tensor {name!r} cannot be stored in .npz: {e}") from None


# --------------------------------------------------------------------------- safetensors


def _safetensors_module():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install safetensors") from None
    return safetensors.numpy


def _safetensors_bfloat16(path: PathLike) -> str | None:
    """The name of a bfloat16 tensor in a safetensors file, if its header lists one."""
    import json

    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > os.path.getsize(path):
                return None
            header = json.loads(f.read(n))
        return next((k for k, v in header.items() if isinstance(v, dict) and v.get("dtype") == "BF16"), None)
    except (OSError, ValueError, AttributeError):
        return None


def _load_safetensors(path: PathLike) -> dict[str, np.ndarray]:
    st = _safetensors_module()
    try:
        return dict(st.load_file(path))
    except Exception as e:  # the Rust extension raises its own SafetensorError, or TypeError
        name = _safetensors_bfloat16(path)
        if name is not None:
            raise ValueError(f"{path}: tensor {name!r} is bfloat16, which is not supported yet") from None
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from None


def _save_safetensors(state: Mapping[str, np.ndarray], tmp: str) -> None:
    st = _safetensors_module()
    try:
        st.save_file(dict(state), tmp)
    except Exception as e:
        raise ValueError(f"cannot write safetensors: {e}") from None


# --------------------------------------------------------------------------- PyTorch


def _torch(verb: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{verb} .pt files needs PyTorch: pip install torch") from None
    return torch


def _load_torch(path: PathLike) -> dict[str, np.ndarray]:
    torch = _torch("reading")
    try:
        # weights_only: a state dict needs no arbitrary unpickling, which could run code.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a loadable PyTorch file ({e})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (or a dict with a 'state_dict' key), got {type(obj).__name__}")
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        if value.dtype == torch.bfloat16:
            # numpy has no bfloat16; converting would silently change what is stored.
            raise ValueError(f"{path}: tensor {name!r} is bfloat16, which is not supported yet")
        try:
            state[str(name)] = value.detach().cpu().contiguous().numpy()
        except (TypeError, RuntimeError) as e:
            raise ValueError(f"{path}: tensor {name!r} cannot be converted to numpy ({e})") from None
    return state


def _save_torch(state: Mapping[str, np.ndarray], tmp: str) -> None:
    torch = _torch("writing")
    tensors = {}
    for name, value in state.items():
        try:
            tensors[name] = torch.from_numpy(np.array(value))  # a copy: from_numpy shares memory
        except TypeError as e:
            raise ValueError(f"tensor {name!r} of dtype {value.dtype} cannot be stored by PyTorch ({e})") from None
    torch.save(tensors, tmp)
