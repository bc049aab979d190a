"""Model files in and out: numpy .npz, safetensors and PyTorch state dicts, chosen by extension,
and Hugging Face checkpoint folders (model.safetensors, or shards listed by
model.safetensors.index.json), chosen by a path without an extension.

A model here is a state dict: an ordered mapping from tensor name to numpy array. Reading checks
the file and raises FileNotFoundError or ValueError naming the path and the problem; writing is
atomic (a temporary file in the same directory, then a rename) and refuses to replace an
existing file unless asked to.

`open_state` reads lazily: it lists the tensors (name, dtype, shape) from the file's headers
and reads each one only when asked, so a model larger than memory can be processed tensor by
tensor (`weightless.compress` does). Sizes in the headers are checked against the file before
anything is allocated for them.

Only numpy is needed for .npz; safetensors and torch are imported when their format is used,
ml_dtypes when a tensor is bfloat16 (numpy has no bfloat16 of its own).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import secrets
import shutil
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Callable, SupportsInt, Union

import numpy as np

from .dtypes import bfloat16, is_bfloat16

__all__ = ["load_state", "open_state", "TensorSource", "save_state", "model_format", "check_format",
           "write_atomically", "FORMATS"]

PathLike = Union[str, "os.PathLike[str]"]

#: File extension (lower case) -> format name.
FORMATS = {".npz": "npz", ".safetensors": "safetensors", ".pt": "pt", ".pth": "pt"}

#: A Hugging Face checkpoint folder's weights: one file, or shards listed by the index.
HF_WEIGHTS, HF_INDEX = "model.safetensors", "model.safetensors.index.json"


def model_format(path: PathLike) -> str:
    """The format of a model path: "npz", "safetensors" or "pt" by its extension, "folder" (a
    Hugging Face checkpoint folder) for a directory or a path without an extension."""
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if os.path.isdir(path) or (not suffix and not os.path.exists(path)):
        return "folder"
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
    if fmt in ("safetensors", "folder"):
        _safetensors_module()
    elif fmt == "pt":
        _torch(verb)
    return fmt


def _check_readable(path: PathLike, fmt: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path) != (fmt == "folder"):
        raise ValueError(f"{path}: is a directory, not a model file" if fmt != "folder" else
                         f"{path}: not a directory")


class TensorSource:
    """A tensor of a model, described but not necessarily read: `name`, `dtype` (a numpy dtype
    name such as "float32", or the file's own name for a type numpy lacks, e.g. "bfloat16"),
    `shape`, `shard` (the file of a checkpoint folder holding it, else None); `load()` reads it
    (each call reads it again)."""

    __slots__ = ("name", "dtype", "shape", "_load", "shard")

    def __init__(self, name: str, dtype: str, shape: Iterable[SupportsInt], load: Callable[[], np.ndarray],
                 shard: str | None = None) -> None:
        self.name, self.dtype, self.shape, self._load = name, dtype, tuple(int(d) for d in shape), load
        self.shard = shard

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def load(self) -> np.ndarray:
        return self._load()

    @classmethod
    def of_array(cls, name: str, value: Any) -> TensorSource:
        a = np.asarray(value)
        return cls(name, _dtype_name(a.dtype), a.shape, lambda: a)

    def __repr__(self) -> str:
        return f"TensorSource({self.name!r}, {self.dtype}, {self.shape})"


def _dtype_name(dtype: np.dtype) -> str:
    """numpy's name of a numeric dtype whatever its byte order ("float32"), else its spelling ("<U2")."""
    return dtype.name if dtype.fields is None and dtype.kind in "biufc" else str(dtype)


def load_state(path: PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a model file, in file order (safetensors files store them sorted)."""
    with open_state(path) as state:
        return {name: t.load() for name, t in state.items()}


@contextlib.contextmanager
def open_state(path: PathLike) -> Iterator[dict[str, TensorSource]]:
    """The tensors of a model file, in file order, each read only when loaded.

    Opening reads the file's headers (the .npy headers of an .npz, the JSON header of a
    safetensors file, the pickle of a .pt file with its data memory-mapped) and checks them; the
    tensors can be loaded until the context exits. Errors as for `load_state`.
    """
    fmt = model_format(path)
    _check_readable(path, fmt)
    opener = {"npz": _open_npz, "safetensors": _open_safetensors, "pt": _open_torch, "folder": _open_folder}[fmt]
    with opener(path) as state:
        yield state


def save_state(state: Mapping[str, np.ndarray], path: PathLike, *, overwrite: bool = False,
               shards: Mapping[str, str] | None = None, index: bool | None = None) -> None:
    """Write a state dict to `path` in the format of its extension, atomically.

    A path without an extension is written as a Hugging Face checkpoint folder: `shards` maps
    tensor names to the file of the folder each goes to (default: all to model.safetensors), and
    model.safetensors.index.json lists them when there are several files or `index` is true.
    Tensors are read from `state` one shard at a time, so a lazy mapping keeps one shard in memory.
    """
    fmt = model_format(path)
    if fmt == "folder":
        _save_folder(state, path, overwrite=overwrite, shards=shards, index=index)
        return
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


def c_contiguous(value: Any) -> np.ndarray:
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
        if os.path.exists(directory):
            raise NotADirectoryError(f"{path}: {directory} is not a directory")
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


# A deflated member cannot expand more than this (deflate's limit is about 1032:1).
_MAX_DEFLATE_RATIO = 1100

# The only compression methods read: numpy writes these, and deflate's ratio bounds a member's
# size (other methods, bzip2 and lzma, expand without such a bound).
_NPZ_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_ZIP_ENCRYPTED = 0x01 | 0x40  # general-purpose flag bits: traditional and strong encryption
_ZIP_PATCHED = 0x20  # "compressed patched data", which zipfile cannot read

# What reading a member of a damaged archive raises: zipfile's BadZipFile (bad local header, CRC),
# NotImplementedError (an unsupported compression method or flag) and RuntimeError (an encrypted
# member), zlib.error (bad deflate data), EOFError (a truncated stream), OSError / ValueError /
# OverflowError (a seek outside the file or past what a C long holds).
_ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError, OSError, ValueError,
               OverflowError)

# What parsing a damaged .npy header raises besides ValueError: numpy parses the header text with
# ast.literal_eval (SyntaxError, TypeError for an unhashable key, RecursionError), retries
# with a tokenizer for headers written by Python 2 (tokenize.TokenError), and builds the dtype
# from the "descr" literal (TypeError, IndexError, KeyError).
_NPY_HEADER_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError, SyntaxError, RecursionError,
                      tokenize.TokenError)

# numpy's limit on the header text (np.lib.format's max_header_size default, numpy >= 1.24).
_NPY_MAX_HEADER = 10000

_READ_CHUNK = 1 << 20


def _npz_error(path: PathLike, problem: object) -> ValueError:
    return ValueError(f"{path}: not a valid .npz file ({problem})")


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The (shape, fortran_order, dtype) of a .npy stream, which is left just after the header.

    Raises one of _NPY_HEADER_ERRORS (or, through `f`, _ZIP_ERRORS) on a malformed header.
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    elif version == (3, 0):
        shape, fortran_order, dtype = _read_array_header_3_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return tuple(shape), fortran_order, dtype


def _read_array_header_3_0(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Version 3.0 of the .npy format: 2.0 with a UTF-8 header (numpy has no public reader for it).

    Checks what numpy's own reader checks: a dict literal with exactly the keys descr,
    fortran_order and shape, of the right types.
    """
    raw = f.read(4)
    if len(raw) != 4:
        raise ValueError("EOF in the array header length")
    (length,) = struct.unpack("<I", raw)
    if length > _NPY_MAX_HEADER:
        raise ValueError(f"header of {length} bytes is larger than the limit of {_NPY_MAX_HEADER}")
    text = f.read(length)
    if len(text) != length:
        raise ValueError(f"EOF in the array header: {len(text)} of {length} bytes")
    header = ast.literal_eval(text.decode("utf-8"))  # UnicodeDecodeError is a ValueError
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"header is not a dictionary with the keys descr, fortran_order and shape: {header!r}")
    shape, fortran_order = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        raise ValueError(f"shape is not valid: {shape!r}")
    if not isinstance(fortran_order, bool):
        raise ValueError(f"fortran_order is not a valid bool: {fortran_order!r}")
    return shape, fortran_order, np.lib.format.descr_to_dtype(header["descr"])


def _check_member(path: PathLike, info: zipfile.ZipInfo) -> None:
    """Refuses what zipfile would refuse only when reading (or read without a size bound)."""
    if info.flag_bits & _ZIP_ENCRYPTED:
        raise _npz_error(path, f"member {info.filename!r} is encrypted")
    if info.flag_bits & _ZIP_PATCHED:
        raise _npz_error(path, f"member {info.filename!r} is compressed patched data")
    if info.compress_type not in _NPZ_METHODS:
        raise _npz_error(path, f"member {info.filename!r} uses compression method {info.compress_type} "
                               f"(only {' and '.join(_NPZ_METHODS.values())} members are read)")


def _read_npy_header(path: PathLike, zf: zipfile.ZipFile,
                     info: zipfile.ZipInfo) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, fortran_order and dtype of a member, checked against its size."""
    try:
        with zf.open(info) as member:
            shape, fortran_order, dtype = _npy_header(member)
            header_len = member.tell()
    except _ZIP_ERRORS + _NPY_HEADER_ERRORS as e:
        raise _npz_error(path, f"member {info.filename!r}: {type(e).__name__}: {e}") from None
    if dtype.hasobject:
        raise _npz_error(path, f"member {info.filename!r} holds Python objects (loading them needs pickle)")
    # The header's size must be the member's, which cannot exceed what the file can hold:
    # nothing is allocated for a shape the data does not back.
    nbytes = math.prod(shape) * dtype.itemsize
    stored = info.compress_size * (_MAX_DEFLATE_RATIO if info.compress_type != zipfile.ZIP_STORED else 1)
    if any(d < 0 for d in shape) or nbytes + header_len != info.file_size or info.file_size > stored + 1024:
        raise _npz_error(path, f"member {info.filename!r}: shape {shape} of {dtype} does not match its "
                               f"{info.file_size} bytes")
    return shape, fortran_order, dtype


@contextlib.contextmanager
def _open_npz(path: PathLike) -> Iterator[dict[str, TensorSource]]:
    # np.load would read anything else as a single .npy array or try to unpickle it.
    with open(path, "rb") as f:
        if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip's first entry, or an empty zip
            raise _npz_error(path, "not a zip archive")
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise _npz_error(path, e) from None
    with zf:
        state: dict[str, TensorSource] = {}
        for info in zf.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise _npz_error(path, f"member {info.filename!r} is not a numpy array")
            name = info.filename[:-4]
            if name in state:
                raise _npz_error(path, f"tensor {name!r} appears twice")
            _check_member(path, info)
            header = _read_npy_header(path, zf, info)
            state[name] = TensorSource(name, _dtype_name(header[2]), header[0], _npz_loader(path, zf, info, header))
        yield state


def _npz_loader(path: PathLike, zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                header: tuple[tuple[int, ...], bool, np.dtype]) -> Callable[[], np.ndarray]:
    shape, fortran_order, dtype = header

    def load() -> np.ndarray:
        # Read here rather than by np.lib.format.read_array, which would allocate whatever shape
        # the header says by now: `header` was checked against the member's size when opening.
        out = np.empty(math.prod(shape), dtype)
        data = out.view(np.uint8) if out.nbytes else np.empty(0, np.uint8)
        try:
            with zf.open(info) as member:
                if _npy_header(member) != header:
                    raise ValueError("the header changed since the file was opened")
                done = 0
                while done < data.size:
                    chunk = member.read(min(_READ_CHUNK, data.size - done))
                    if not chunk:
                        raise EOFError(f"only {done} of {data.size} data bytes")
                    data[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    done += len(chunk)
        except _ZIP_ERRORS + _NPY_HEADER_ERRORS as e:
            raise _npz_error(path, f"member {info.filename!r}: {type(e).__name__}: {e}") from None
        return out.reshape(shape[::-1]).transpose() if fortran_order else out.reshape(shape)

    return load


def _save_npz(state: Mapping[str, np.ndarray], tmp: str) -> None:
    # What np.savez does, written out because savez's keyword arguments would clash with tensors
    # named "file" or "allow_pickle", and because it appends ".npz" to names without it.
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in state.items():
            if is_bfloat16(value.dtype):
                raise ValueError(f"tensor {name!r} is bfloat16, which .npz cannot hold (numpy would store it as "
                                 "untyped 2-byte values); write .safetensors or .pt")
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                try:
                    np.lib.format.write_array(member, value, allow_pickle=False)
                except ValueError as e:
                    raise ValueError(f"tensor {name!r} cannot be stored in .npz: {e}") from None


# --------------------------------------------------------------------------- safetensors


def _safetensors_module() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install safetensors") from None
    return safetensors.numpy


_SAFETENSORS_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
                      "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
                      "F32": "float32", "F64": "float64", "BF16": "bfloat16"}


@contextlib.contextmanager
def _open_safetensors(path: PathLike, shard: str | None = None) -> Iterator[dict[str, TensorSource]]:
    _safetensors_module()
    from safetensors import safe_open

    # The Rust extension raises its own SafetensorError (and others, undocumented) for a bad
    # header: anything but MemoryError is the file's fault.
    try:
        handle = safe_open(os.fspath(path), framework="numpy")  # checks the header against the file size
    except MemoryError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from None
    with handle as f:
        try:
            described = [(name, f.get_slice(name)) for name in f.keys()]
            tensors = [(name, info.get_dtype(), info.get_shape()) for name, info in described]
        except MemoryError:
            raise
        except Exception as e:
            raise ValueError(f"{path}: not a valid safetensors file ({e})") from None
        state: dict[str, TensorSource] = {}
        for name, code, shape in tensors:
            dtype = _SAFETENSORS_DTYPES.get(code, code.lower())
            if dtype == "bfloat16":
                bfloat16()  # safetensors gives ml_dtypes' bfloat16 arrays: ImportError naming it if missing
            state[name] = TensorSource(name, dtype, shape, _safetensors_loader(path, f, name), shard)
        yield state


def _safetensors_loader(path: PathLike, f: Any, name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            return f.get_tensor(name)
        except MemoryError:
            raise
        except Exception as e:
            raise ValueError(f"{path}: tensor {name!r} cannot be read ({e})") from None

    return load


def _save_safetensors(state: Mapping[str, np.ndarray], tmp: str) -> None:
    st = _safetensors_module()
    try:
        st.save_file(dict(state), tmp)
    except Exception as e:
        raise ValueError(f"cannot write safetensors: {e}") from None


# --------------------------------------------------------------------------- Hugging Face folders


def _folder_error(path: PathLike, problem: str) -> ValueError:
    return ValueError(f"{path}: not a valid checkpoint folder ({problem})")


def _read_index(path: PathLike) -> dict[str, str]:
    """tensor name -> shard file, from a folder's model.safetensors.index.json."""
    index = os.path.join(path, HF_INDEX)
    try:
        with open(index, "rb") as f:
            data = json.loads(f.read(1 << 26))  # an index of a million tensors is ~64 MB
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _folder_error(path, f"{HF_INDEX}: {e}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise _folder_error(path, f"{HF_INDEX} has no weight_map of tensor names to files")
    for shard in set(weight_map.values()):
        # Shards are files of the folder itself: nothing outside it is read, or later written.
        if os.path.basename(shard) != shard or shard in ("", ".", "..") or not shard.endswith(".safetensors"):
            raise _folder_error(path, f"{HF_INDEX} names {shard!r}, not a .safetensors file of the folder")
    return weight_map


@contextlib.contextmanager
def _open_folder(path: PathLike) -> Iterator[dict[str, TensorSource]]:
    # A folder as Hugging Face writes one: model.safetensors, or the shards its index lists.
    if os.path.exists(os.path.join(path, HF_INDEX)):
        weight_map = _read_index(path)
        shards = sorted(set(weight_map.values()))
    elif os.path.isfile(os.path.join(path, HF_WEIGHTS)):
        weight_map, shards = None, [HF_WEIGHTS]
    else:
        raise _folder_error(path, f"it has neither {HF_WEIGHTS} nor {HF_INDEX}")
    with contextlib.ExitStack() as stack:
        state: dict[str, TensorSource] = {}
        for shard in shards:
            file = os.path.join(path, shard)
            _check_readable(file, "safetensors")
            for name, t in stack.enter_context(_open_safetensors(file, shard)).items():
                if name in state:
                    raise _folder_error(path, f"tensor {name!r} is in {state[name].shard} and {shard}")
                if weight_map is not None and weight_map.get(name) != shard:
                    raise _folder_error(path, f"tensor {name!r} is in {shard}, the index says {weight_map.get(name)}")
                state[name] = t
        if weight_map is not None and len(state) != len(weight_map):
            absent = sorted(set(weight_map) - set(state))
            raise _folder_error(path, f"the index lists {', '.join(map(repr, absent[:3]))} which no shard holds")
        yield state


def _save_folder(state: Mapping[str, np.ndarray], path: PathLike, *, overwrite: bool,
                 shards: Mapping[str, str] | None, index: bool | None) -> None:
    shard_of = {name: (shards or {}).get(name, HF_WEIGHTS) for name in state}
    files = sorted(set(shard_of.values()))
    if not all(os.path.basename(f) == f and f.endswith(".safetensors") and f != HF_INDEX for f in files):
        raise ValueError(f"shard names must be .safetensors file names, got {files}")
    with_index = len(files) > 1 or bool(index)

    def write(tmp: str) -> None:
        total = 0
        for file in files:  # one shard's tensors in memory at a time
            arrays = _as_arrays({name: state[name] for name in state if shard_of[name] == file})
            total += sum(a.nbytes for a in arrays.values())
            _save_safetensors(arrays, os.path.join(tmp, file))
        if with_index:
            text = json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(shard_of.items()))},
                              indent=2)
            with open(os.path.join(tmp, HF_INDEX), "w", encoding="utf-8") as f:
                f.write(text + "\n")

    write_folder_atomically(path, write, overwrite=overwrite)


def write_folder_atomically(path: PathLike, write: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Call `write(tmp)` on a fresh directory next to `path`, then rename it to `path`.

    A reader sees the old folder or the complete new one. With overwrite, an existing folder is
    renamed aside first and removed only once the new one is in place; a folder that is not a
    checkpoint (no model.safetensors or index) is never replaced.
    """
    path = os.fspath(path).rstrip(os.sep) or os.sep
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{path}: directory {parent} does not exist")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{path}: exists and is not a folder")
        if not overwrite:
            raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
        if not {HF_WEIGHTS, HF_INDEX} & set(os.listdir(path)):
            raise ValueError(f"{path}: a folder that is not a checkpoint; refusing to replace it")
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    os.mkdir(tmp)
    old = None
    try:
        write(tmp)
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
            old = f"{tmp}.old"
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(path):
            os.rename(old, path)  # put the user's folder back
            old = None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- PyTorch


def _torch(verb: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(f"{verb} .pt files needs PyTorch: pip install torch") from None
    return torch


_MSDOS_DIRECTORY = 0x10


def _check_torch_zip(path: PathLike) -> None:
    """Checks the records of a zip-format .pt file against the file's size.

    torch.load allocates a record's uncompressed size, as the zip's central directory states it,
    before reading the record: a flipped bit there asks for gigabytes. Legacy (pickle) files,
    which do not start with a zip entry, are left to torch.load.
    """
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except _ZIP_ERRORS as e:
        raise ValueError(f"{path}: not a loadable PyTorch file ({type(e).__name__}: {e})") from None
    for info in infos:
        # torch's zip reader reads a record marked as a directory (the MS-DOS attribute, bit 4 of
        # the external attributes) without filling the buffer it returns: uninitialized memory.
        if info.external_attr & _MSDOS_DIRECTORY or info.is_dir():
            raise ValueError(f"{path}: not a loadable PyTorch file (record {info.filename!r} is marked as a "
                             "directory)")
        bound = info.compress_size * (_MAX_DEFLATE_RATIO if info.compress_type == zipfile.ZIP_DEFLATED else 1)
        if info.compress_type not in _NPZ_METHODS or info.file_size > bound:
            raise ValueError(f"{path}: not a loadable PyTorch file (record {info.filename!r} declares "
                             f"{info.file_size} bytes in {info.compress_size}, compression method "
                             f"{info.compress_type})")


@contextlib.contextmanager
def _open_torch(path: PathLike) -> Iterator[dict[str, TensorSource]]:
    torch = _torch("reading")
    _check_torch_zip(path)
    # weights_only: a state dict needs no arbitrary unpickling, which could run code. mmap: the
    # tensors' data is paged in when a tensor is converted, not read whole (zip-format files).
    # torch.load's exceptions are undocumented (pickle's, its zip reader's RuntimeError, ...):
    # anything but MemoryError is the file's fault.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except MemoryError:
        raise
    except Exception:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files
        except MemoryError:
            raise
        except Exception as e:
            raise ValueError(f"{path}: not a loadable PyTorch file ({e})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (or a dict with a 'state_dict' key), got {type(obj).__name__}")
    state: dict[str, TensorSource] = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        if value.dtype == torch.bfloat16:
            bfloat16()  # read as ml_dtypes' bfloat16: ImportError naming it if missing
        state[str(name)] = TensorSource(str(name), str(value.dtype).replace("torch.", ""), value.shape,
                                        _torch_loader(path, str(name), value))
    yield state


def _torch_loader(path: PathLike, name: str, value: Any) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            torch = _torch("reading")
            t = value.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:  # numpy has none: the same bits, as ml_dtypes' type
                return t.view(torch.int16).numpy().view(bfloat16())
            return t.numpy()
        except (TypeError, RuntimeError) as e:
            raise ValueError(f"{path}: tensor {name!r} cannot be converted to numpy ({e})") from None

    return load


def _save_torch(state: Mapping[str, np.ndarray], tmp: str) -> None:
    torch = _torch("writing")
    tensors = {}
    for name, value in state.items():
        try:
            if is_bfloat16(value.dtype):  # the same bits, as torch's own bfloat16
                tensors[name] = torch.from_numpy(np.array(value).view(np.int16)).view(torch.bfloat16)
                continue
            tensors[name] = torch.from_numpy(np.array(value))  # a copy: from_numpy shares memory
        except TypeError as e:
            raise ValueError(f"tensor {name!r} of dtype {value.dtype} cannot be stored by PyTorch ({e})") from None
    # To a file object: given a path, torch.save names the archive's top directory after it, here
    # the random temporary name, so the same state would give different bytes each time.
    with open(tmp, "wb") as f:
        torch.save(tensors, f)
