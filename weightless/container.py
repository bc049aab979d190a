"""The whole-model file (.wl): every tensor of a state dict, the chosen layers Weightless-encoded.

This module is the policy: which tensors are encoded and by which codec, their options, the
measurements recorded, progress and parallelism. The file itself (format version 3, docs/FORMAT.md
"The model container, version 3") is read and written by the C++ core (csrc/model/container.h,
`_core.ModelReader` / `_core.ModelWriter`), the same reader the C API and wl-decode use:
payloads back to back, then a binary directory (name, dtype, codec, shape, length, CRC-32 per
tensor), an optional JSON metadata blob (options, errors, baselines; written by this module)
and a fixed-size trailer. Version 1 files (a JSON header) are still read (weightless._legacy_v1).

    report = compress(state_or_path, "model.wl", sparsity=0.9, cell_bits=8)
    state = decompress("model.wl")
    with open_container("model.wl") as c:      # directory only; tensors read on demand
        layer = c.encoded_layer("fc1.weight")
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fnmatch
import inspect
import io
import json
import math
import operator
import os
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from . import _core
from ._legacy_v1 import V1File
from .clustered import prune_and_cluster
from .codec import EncodedLayer, check_decode_size, encode_clustered, encode_layer
from .dtypes import ITEMSIZE, is_bfloat16, numpy_dtype
from .exact import MAX_CLUSTERS as EXACT_MAX_CLUSTERS
from .exact import ExactLayer
from .exact import encode_clustered as encode_exact_clustered
from .io import HF_INDEX, PathLike, TensorSource, c_contiguous, model_format, open_state, save_state, write_atomically
from .quality import baseline_nbytes, measure

__all__ = [
    "compress",
    "decompress",
    "decompress_to",
    "open_container",
    "Container",
    "TensorEntry",
    "CompressionReport",
    "DEFAULT_MIN_ELEMENTS",
    "RAW_DTYPES",
    "ENCODED_DTYPES",
]

MAGIC = b"WLMF"
VERSION = 3  # written; version 1 files are still read
#: The kind of each codec id of the file's directory (TensorEntry.kind): "encoded" is the
#: Bloomier filter (the codec "bloomier"), "float16" a float tensor stored as IEEE half floats.
KINDS = ("raw", "encoded", "exact", "float16")
_CODEC_IDS = {kind: i for i, kind in enumerate(KINDS)}
_CODED = ("encoded", "exact")  # kinds with an encoding (options, kept weights, clusters)

#: Without `layers`, compress encodes the floating tensors with ndim >= 2 and at least this many
#: elements: the weight matrices and conv kernels, not biases, norms or small embeddings.
DEFAULT_MIN_ELEMENTS = 1024

#: The codecs a tensor can be stored with: "auto" picks per tensor (see `compress`).
CODECS = ("auto", "bloomier", "exact")

#: With codec="auto", the filter is chosen only if its false positives keep the decoded tensor
#: within this relative error of the pruned, clustered one (||decoded - clustered|| /
#: ||clustered||): their energy at most a quarter of the kept weights'. Networks retrained around
#: the filter (Algorithm 1, weightless.torch) tolerate far more, and ask for the filter itself.
DEFAULT_MAX_ERROR = 0.5

#: Dtypes a tensor may have in a .wl file (numpy names); stored as little-endian bytes.
RAW_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "bfloat16", "float32", "float64")
#: Dtypes an encoded tensor may have; it decodes to float32 and is cast back to this dtype.
ENCODED_DTYPES = ("float16", "bfloat16", "float32", "float64")

_MAX_NDIM = 64  # numpy's limit

# encode_layer's keyword options and their defaults, recorded per encoded tensor. `threads` is
# accepted but not recorded: the encoding does not depend on it.
_ENCODE_DEFAULTS = {
    p.name: p.default for p in inspect.signature(encode_layer).parameters.values() if p.kind is p.KEYWORD_ONLY
}
_UNRECORDED = ("threads",)
# What an encoded tensor's recorded options hold unless the metadata says otherwise (it stores
# only the options that differ from these).
_RECORDED_DEFAULTS = {k: v for k, v in _ENCODE_DEFAULTS.items() if k not in _UNRECORDED} | {
    "codec": "auto", "max_error": DEFAULT_MAX_ERROR}


#: What `compress(layers=...)` takes: None (the default choice), names or glob patterns, or a
#: mapping name -> options overriding the common ones.
Layers = Union[None, Sequence[str], Mapping[str, Mapping[str, Any]]]


# --------------------------------------------------------------------------- header entries


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a .wl file, as its directory and metadata describe it.

    `nbytes` is the length of its payload in the file, `offset` where the payload starts (from
    the start of the file; in a version 1 file, from the start of its data area). The encoding
    fields (`options`, `kept`, `clusters`, `cell_bits`, `false_positives`) are None for raw and
    float16 tensors. The measurements recorded when the tensor was written (None in files
    written without metadata or before they were recorded): `relative_error` of the decoded
    tensor against the original and `relative_error_clustered` against the pruned, clustered
    one (None if infinite: an all-zero reference), `baselines`, bytes other formats take for the
    same kept weights and codes, and `candidates`, bytes each codec tried would have taken.
    """

    name: str
    # "raw", "encoded" (the Bloomier filter, lossy), "exact" (the exact codec) or "float16"
    # (IEEE half floats, lossy)
    kind: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    crc32: int
    options: dict[str, Any] | None = None
    kept: int | None = None
    clusters: int | None = None
    cell_bits: int | None = None
    false_positives: int | None = None
    relative_error: float | None = None
    relative_error_clustered: float | None = None
    baselines: dict[str, int] | None = None
    candidates: dict[str, int] | None = None  # bytes each codec tried would have taken

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def original_nbytes(self) -> int:
        """Bytes of the uncompressed tensor in its dtype."""
        return self.size * ITEMSIZE[self.dtype]

    def metadata(self) -> dict[str, Any]:
        """What the metadata blob records of this tensor (informative; the payload defines it)."""
        d: dict[str, Any] = {}
        if self.kind in _CODED:
            # Only the options that differ from the defaults: a reader fills in the rest.
            options = {k: v for k, v in (self.options or {}).items()
                       if k not in _RECORDED_DEFAULTS or _RECORDED_DEFAULTS[k] != v}
            d.update(options=options, kept=self.kept, clusters=self.clusters)
        if self.kind == "encoded":
            d.update(cell_bits=self.cell_bits, false_positives=self.false_positives)
        for key in ("relative_error", "relative_error_clustered"):
            if getattr(self, key) is not None:
                d[key] = float(f"{getattr(self, key):.6g}")  # a measurement: 6 digits say it
        for key in ("baselines", "candidates"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass(frozen=True)
class CompressionReport:
    """What `compress` wrote: one entry per tensor, in file order, and the totals."""

    path: str
    tensors: list[TensorEntry]
    original_bytes: int  # every tensor uncompressed, in its own dtype
    compressed_bytes: int  # the .wl file

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes

    @property
    def encoded(self) -> list[TensorEntry]:
        """The tensors stored with an encoding: the filter ("encoded") or the exact codec."""
        return [e for e in self.tensors if e.kind in _CODED]


# --------------------------------------------------------------------------- writing


def _check_dtype(t: TensorSource) -> None:
    # TensorSource.dtype is numpy's name ("float32" whatever the byte order, "bfloat16" for
    # ml_dtypes' type); fields, strings, objects, complex numbers and other types have other names.
    if t.dtype not in RAW_DTYPES:
        raise ValueError(f"tensor {t.name!r} has dtype {t.dtype}, which a .wl file cannot store "
                         f"(supported: {', '.join(RAW_DTYPES)})")


def _little_endian_bytes(a: np.ndarray) -> memoryview:
    """The tensor's bytes as a flat uint8 array, little-endian, without a copy when possible."""
    a = c_contiguous(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))  # a byte swap: NaN payloads survive
    return a.reshape(-1).view(np.uint8).data


def _select_layers(state: Mapping[str, TensorSource], layers: Layers) -> dict[str, dict[str, Any]]:
    """name -> per-layer option overrides for the tensors to encode."""
    if layers is None:
        return {
            name: {}
            for name, t in state.items()
            if t.dtype in ENCODED_DTYPES and t.ndim >= 2 and t.size >= DEFAULT_MIN_ELEMENTS
        }
    if isinstance(layers, str):
        raise TypeError("layers must be a list of tensor names (or a dict name -> options), not a string")
    chosen: dict[str, dict[str, Any]] = {}
    items = layers.items() if isinstance(layers, Mapping) else ((n, {}) for n in layers)
    for pattern, overrides in items:
        if not isinstance(pattern, str):
            raise TypeError(f"layer names must be strings, got {pattern!r}")
        for name in _matching(state, pattern):
            if name in chosen:
                raise ValueError(f"layer {name!r} is named twice" + (f" (by {pattern!r})" if name != pattern else ""))
            chosen[name] = dict(overrides or {})
    for name in chosen:
        if state[name].dtype not in ENCODED_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {state[name].dtype}; only floating tensors "
                             f"({', '.join(ENCODED_DTYPES)}) can be encoded")
    return chosen


_GLOB_CHARACTERS = frozenset("*?[")


def _matching(state: Mapping[str, TensorSource], pattern: str) -> list[str]:
    """The tensor names a layer name or glob pattern ("fc*.weight") selects, in file order.

    A name is taken literally when a tensor has exactly that name, so tensor names that contain
    glob characters still select themselves.
    """
    if pattern in state:
        return [pattern]
    if _GLOB_CHARACTERS.isdisjoint(pattern):
        raise ValueError(f"no tensor named {pattern!r}; the model has: {', '.join(map(repr, state)) or 'no tensors'}")
    names = [name for name in state if fnmatch.fnmatchcase(name, pattern)]
    if not names:
        raise ValueError(f"no tensor matches {pattern!r}; the model has: {', '.join(map(repr, state)) or 'no tensors'}")
    return names


def _check_options(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Options with JSON-friendly types (numpy scalars become Python numbers)."""
    known = [*_ENCODE_DEFAULTS, "codec", "max_error"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{where}: unknown layer option(s) {', '.join(unknown)} (expected {', '.join(known)})")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "codec":
            if value not in CODECS:
                raise ValueError(f"{where}: codec must be one of {', '.join(CODECS)}, got {value!r}")
            out[key] = value
        elif key == "max_error" and value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{where}: max_error must be a non-negative number or None, got {value!r}")
        elif value is None or key == "init":
            out[key] = value
        elif key in ("sparsity", "threshold", "fp_rate", "max_error"):
            out[key] = float(value)
        else:
            out[key] = operator.index(value)
    return out


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over the tensors, or None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install 'weightless[cli]'") from None
    return tqdm(total=total, unit="tensor", leave=False, file=sys.stderr)


def compress(
    state_or_path: Mapping[str, np.ndarray] | PathLike,
    out_path: PathLike,
    *,
    layers: Layers = None,
    overwrite: bool = False,
    progress: bool = False,
    executor: Executor | None = None,
    baselines: bool = False,
    codec: str = "auto",
    max_error: float | None = DEFAULT_MAX_ERROR,
    metadata: bool = True,
    small_float16: int | None = None,
    **layer_options: Any,
) -> CompressionReport:
    """Write a model to a .wl file, encoding the chosen layers and storing the rest exactly.

    Args:
        state_or_path: a mapping name -> array, or a model file `weightless.io.load_state` reads.
        out_path: the .wl file to write (atomically).
        layers: the tensors to encode. None: the floating tensors with ndim >= 2 and at least
            DEFAULT_MIN_ELEMENTS elements. A list of names or glob patterns ("fc*.weight"):
            exactly those (each name must exist, each pattern match, each tensor be floating,
            none be selected twice). A dict name -> options: those, each with options overriding layer_options.
        overwrite: replace an existing out_path.
        progress: show a progress bar over the tensors on stderr (needs tqdm).
        baselines: also size CSR + zstd for each encoded tensor (slower; needs zstandard). The
            Deep Compression style size is always recorded, with each tensor's relative errors.
        codec: how each chosen tensor is stored, once pruned and clustered: "bloomier" (the
            Weightless filter: its cells, plus false positives), "exact" (the exact near-entropy
            codec, `weightless.exact`: no false positives) or "auto" (the default): the smaller
            of the two, the filter only if its false positives keep the decoded tensor within
            `max_error` of the clustered one (None: any error). A per-layer `codec` in `layers`
            overrides it.
        max_error: see `codec`; DEFAULT_MAX_ERROR by default.
        metadata: write the JSON metadata blob (options, per-tensor errors, baselines, candidate
            sizes, the folder's shard layout, the library version). Without it a file holds only
            what decoding needs (LeNet-5: under 250 bytes besides the payloads); `inspect` then
            shows no errors or baselines.
        small_float16: store the float tensors that are not encoded (biases, norms) and have at
            most this many elements as IEEE half floats (codec "float16"). LOSSY: values round
            to float16's 11-bit significand (relative error up to 2^-11; tiny values lose more
            as subnormals); a tensor whose finite values would overflow float16 stays raw.
            None (the default): every such tensor is stored bit for bit.
        executor: a `concurrent.futures.Executor` to encode tensors on concurrently (a
            ProcessPoolExecutor for one machine, `distributed.Client(...).get_executor()` for a
            Dask cluster). The file is byte for byte the sequential one. Workers receive a
            file's path and a tensor name and read the tensor themselves (so a cluster needs the
            file on a shared file system), or the array of an in-memory state dict; a bounded
            number of tensors is in flight. Each encode then runs on one thread unless
            `threads` is given.
        **layer_options: passed to `encode_layer` (sparsity, threshold, clusters, cell_bits,
            fp_rate, seed, init, threads) and recorded in the file.

    The input is never modified. Raises ValueError naming the tensor for NaN/Inf weights in a
    layer to encode or for a dtype the format cannot store.

    Sequentially, tensors are processed one at a time: a model file is read lazily (`weightless.io.open_state`)
    and each tensor's payload is appended to a temporary file next to out_path as soon as it is
    made, so memory holds one tensor (and its encoding) at a time, never the whole model. The
    directory, which lists every payload, is written last; the temporary file is renamed to
    out_path when complete (removed on any failure), so out_path appears complete or not at all.
    """
    out = os.fspath(out_path)
    if os.path.isdir(out):
        raise ValueError(f"{out}: is a directory")
    if not overwrite and os.path.exists(out):
        raise FileExistsError(f"{out}: exists (pass overwrite=True to replace it)")  # before the work
    source = os.fspath(state_or_path) if isinstance(state_or_path, (str, os.PathLike)) else None
    entries: list[TensorEntry] = []
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(state_or_path, (str, os.PathLike)):
                if os.path.exists(out) and os.path.exists(state_or_path) and os.path.samefile(state_or_path, out):
                    raise ValueError(f"{out}: the output would replace the input")
                state = stack.enter_context(open_state(state_or_path))
            elif isinstance(state_or_path, Mapping):
                state = {}
                for name, value in state_or_path.items():
                    if not isinstance(name, str):
                        raise ValueError(f"tensor names must be strings, got {name!r}")
                    state[name] = TensorSource.of_array(name, value)
            else:
                raise TypeError(f"expected a state dict or a path, got {type(state_or_path).__name__}")
            for t in state.values():  # from the headers alone: fails before any work
                _check_dtype(t)
                if t.ndim > _MAX_NDIM:
                    raise ValueError(f"tensor {t.name!r} has {t.ndim} dimensions (at most {_MAX_NDIM})")

            common = _check_options({"codec": codec, "max_error": max_error, **layer_options}, "compress")
            chosen = {
                name: {**common, **_check_options(overrides, f"layer {name!r}")}
                for name, overrides in _select_layers(state, layers).items()
            }
            if small_float16 is not None and (isinstance(small_float16, bool) or operator.index(small_float16) < 0):
                raise ValueError(f"small_float16 must be a non-negative number of elements, got {small_float16!r}")
            info: dict[str, Any] = {
                "weightless_version": _library_version(),
                "options": {k: v for k, v in common.items() if k not in _UNRECORDED},
                "layers": None if layers is None else list(chosen),
            }
            if source is not None and any(t.shard is not None for t in state.values()):
                # A checkpoint folder: which file held each tensor, so decompress writes it back alike.
                info["folder"] = {"shards": {name: t.shard for name, t in state.items()},
                                      "index": os.path.exists(os.path.join(source, HF_INDEX))}
            if executor is not None:  # parallel over tensors: one thread per encode, unless asked
                chosen = {name: {"threads": 1, **options} for name, options in chosen.items()}
            if baselines:
                chosen = {name: {**options, "baselines": True} for name, options in chosen.items()}
            write_atomically(out, lambda tmp: _write(tmp, info if metadata else None, state, chosen, progress, entries,
                                                     source, executor, small_float16), overwrite=overwrite)
    except ValueError as e:  # a model file's problem names the file, whatever step found it
        if source is None or str(e).startswith(source):
            raise
        raise ValueError(f"{source}: {e}") from None
    return CompressionReport(out, entries, sum(e.original_nbytes for e in entries), os.path.getsize(out))


# The options of the pruning and clustering step; the rest, and the seed, are the filter's.
_CLUSTER_OPTIONS = ("sparsity", "threshold", "clusters", "init")




def _encode(name: str, a: np.ndarray, options: dict[str, Any]) -> tuple[TensorEntry, bytes]:
    """The entry (at offset 0) and blob of an encoded tensor, with its errors and baselines."""
    # bfloat16 values are float32 values with the low mantissa bits zero: widened exactly.
    w = a.astype(np.float32) if is_bfloat16(a.dtype) else a
    settings = dict(options)
    zstd, codec = bool(settings.pop("baselines", False)), settings.pop("codec", "auto")
    max_error = settings.pop("max_error", DEFAULT_MAX_ERROR)
    seed = {"seed": settings["seed"]} if "seed" in settings else {}
    try:
        clustered = prune_and_cluster(w, **{k: v for k, v in settings.items() if k in _CLUSTER_OPTIONS}, **seed)
        layer = filter_quality = exact = None
        if codec in ("auto", "bloomier"):
            layer = encode_clustered(clustered, **{k: v for k, v in settings.items() if k not in _CLUSTER_OPTIONS})
            # Decoded through the filter itself: the decode-size limit guards against hostile
            # files, and this tensor is the caller's own, already in memory.
            decoded = layer.filter.decode_weights(layer.size, layer.codebook, threads=settings.get("threads"))
            layer._overlay(decoded)  # the outliers, if the encoder stored any, as every reader applies them
            filter_quality = measure(w, decoded, clustered)
            del decoded
        if codec == "exact" or (codec == "auto" and len(clustered.codebook) <= EXACT_MAX_CLUSTERS):
            exact = encode_exact_clustered(clustered.positions, clustered.codes, clustered.shape, clustered.codebook)
    except (ValueError, TypeError) as e:
        raise ValueError(f"tensor {name!r}: {e}") from None
    # What each would take in the file (an exact payload is stored headless).
    candidates: dict[str, int] = {}
    if layer is not None:
        candidates["bloomier"] = layer.nbytes
    if exact is not None:
        candidates["exact"] = exact.payload_nbytes
    use_filter = layer is not None and (exact is None or (
        layer.nbytes < exact.payload_nbytes and filter_quality is not None
        and (max_error is None or filter_quality.relative_error_clustered <= max_error)))
    recorded = {**_ENCODE_DEFAULTS, **settings}
    for key in _UNRECORDED:
        recorded.pop(key, None)
    recorded.update(codec=codec, max_error=max_error)
    baselines = baseline_nbytes(clustered, zstd=zstd)
    if use_filter:
        assert layer is not None and filter_quality is not None
        data, kind, quality = layer.to_payload(), "encoded", filter_quality
        cell_bits: int | None = layer.cell_bits
        false_positives: int | None = layer.false_positives
    else:
        assert exact is not None
        data, kind, quality = exact.to_payload(), "exact", measure(w, clustered.dense(), clustered)
        cell_bits = false_positives = None
    entry = TensorEntry(name, kind, a.dtype.name, tuple(a.shape), 0, len(data), zlib.crc32(data), options=recorded,
                        kept=clustered.kept, clusters=len(clustered.codebook), cell_bits=cell_bits,
                        false_positives=false_positives, relative_error=_finite(quality.relative_error),
                        relative_error_clustered=_finite(quality.relative_error_clustered), baselines=baselines,
                        candidates=candidates)
    return entry, data


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _loaded(t: TensorSource) -> np.ndarray:
    a = t.load()
    if a.dtype.name != t.dtype or a.shape != t.shape:  # the file changed, or a lying header
        raise ValueError(f"tensor {t.name!r}: read {a.dtype} {a.shape}, its header says {t.dtype} {t.shape}")
    return a


@dataclass(frozen=True)
class _FileTensor:
    """A tensor of a model file, named rather than held, so that a worker process (or a machine
    sharing the file system) reads it itself: only the name and the encoding cross to workers."""

    path: str
    name: str

    def load(self) -> np.ndarray:
        with open_state(self.path) as state:
            return _loaded(state[self.name])


def _encode_task(tensor: _FileTensor | np.ndarray, name: str, options: dict[str, Any]) -> tuple[TensorEntry, bytes]:
    """What an executor runs for one encoded tensor (a top-level function, so it pickles)."""
    return _encode(name, tensor if isinstance(tensor, np.ndarray) else tensor.load(), options)


def _library_version() -> str:
    from . import __version__

    return __version__


def _in_flight(executor: Executor) -> int:
    """Encoded tensors submitted ahead of the one being written: enough to keep every worker busy,
    few enough that memory holds a bounded number of tensors whatever the model's size."""
    workers = getattr(executor, "_max_workers", None)  # ThreadPool/ProcessPoolExecutor; others: the cores
    return 2 * (workers if isinstance(workers, int) and workers > 0 else os.cpu_count() or 1)


def _float16_payload(name: str, a: np.ndarray) -> tuple[TensorEntry, bytes] | None:
    """The entry and payload of a float tensor stored as IEEE half floats, or None if float16
    would overflow one of its finite values (it is then stored raw)."""
    wide = a.astype(np.float32)  # exact for bfloat16 and float32; float64 rounds once more below
    with np.errstate(over="ignore"):  # an overflow is detected below
        half = wide.astype("<f2")
    if not np.array_equal(np.isfinite(half), np.isfinite(wide)):
        return None
    data = half.tobytes()
    reference = np.asarray(a, dtype=np.float64).ravel()
    finite = np.isfinite(reference)  # inf and NaN are kept as they are; the error is of the rest
    reference, rounded = reference[finite], half.ravel()[finite].astype(np.float64)
    norm = float(np.linalg.norm(reference))
    error = float(np.linalg.norm(rounded - reference)) / norm if norm else math.inf
    return TensorEntry(name, "float16", a.dtype.name, tuple(a.shape), 0, len(data), zlib.crc32(data),
                       relative_error=_finite(error)), data


def _write(tmp: str, info: dict[str, Any] | None, state: Mapping[str, TensorSource],
           chosen: dict[str, dict[str, Any]], progress: bool, entries: list[TensorEntry], source_path: str | None,
           executor: Executor | None, small_float16: int | None) -> None:
    """Writes the .wl file to tmp (through the C++ writer); appends the entries written.

    Sequentially, one tensor is in memory at a time. With an executor, the encoded tensors are
    submitted in file order, a bounded number ahead, and written in file order as they finish,
    so the file is byte for byte the sequential one. `info` is the metadata without its
    per-tensor part, or None to write no metadata.
    """
    writer = _core.ModelWriter(tmp)
    bar = _progress(len(state), progress)
    pending: collections.deque[tuple[str, Future[tuple[TensorEntry, bytes]] | None]] = collections.deque()

    def write(entry: TensorEntry, payload: bytes | memoryview) -> None:
        entries.append(dataclasses.replace(entry, offset=writer.bytes_written))
        try:
            writer.append(entry.name, entry.dtype, _CODEC_IDS[entry.kind], list(entry.shape), payload)
        except ValueError as e:  # the writer checks what a reader checks: a bug here, or a bad name
            raise ValueError(f"tensor {entry.name!r}: {e}") from None
        if bar is not None:
            bar.update(1)

    def write_next() -> None:
        name, future = pending.popleft()
        if future is not None:
            write(*future.result())
            return
        t = state[name]
        a = _loaded(t)
        if name in chosen:
            write(*_encode(name, a, chosen[name]))
            return
        if small_float16 is not None and t.dtype in ("float32", "float64", "bfloat16") and t.size <= small_float16:
            half = _float16_payload(name, a)
            if half is not None:
                write(*half)
                return
        blob = _little_endian_bytes(a)  # the tensor's own memory when contiguous little-endian
        write(TensorEntry(name, "raw", t.dtype, t.shape, 0, blob.nbytes, zlib.crc32(blob)), blob)

    def submit(name: str) -> Future[tuple[TensorEntry, bytes]] | None:
        if executor is None or name not in chosen:
            return None  # done by write_next, when the tensor's turn comes
        # A file's tensor is read by the worker; an in-memory state dict's array is sent.
        tensor = _FileTensor(source_path, name) if source_path is not None else state[name].load()
        return executor.submit(_encode_task, tensor, name, chosen[name])

    limit = _in_flight(executor) if executor is not None else 0
    try:
        for name in state:
            if executor is not None and name in chosen:  # wait while `limit` are in flight
                while sum(f is not None for _, f in pending) >= limit:
                    write_next()
            pending.append((name, submit(name)))
            while pending and pending[0][1] is None:  # needs no waiting: its turn has come
                write_next()
        while pending:
            write_next()
    except BaseException:
        for _, future in pending:  # nothing more is needed of the workers
            if future is not None:
                future.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()  # clears the bar even when a layer fails, so an error message starts a clean line
    metadata = b""
    if info is not None:
        tensors = {e.name: m for e in entries if (m := e.metadata())}
        metadata = json.dumps({**info, "tensors": tensors}, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
    writer.finish(metadata)


# --------------------------------------------------------------------------- reading


def _malformed(path: str, problem: str) -> ValueError:
    return ValueError(f"{path}: malformed .wl file: {problem}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _recorded(d: Any, where: str, kind: str) -> dict[str, Any]:
    """A tensor's recorded statistics and measurements (metadata, or a version 1 header entry),
    type-checked; raises ValueError (without the path) naming the problem."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ValueError(f"{where}: not a JSON object")
    out: dict[str, Any] = {}
    statistics = {"encoded": ("kept", "clusters", "cell_bits", "false_positives"), "exact": ("kept", "clusters")}
    for key in statistics.get(kind, ()):
        v = d.get(key)
        if v is not None and (not _is_int(v) or v < 0):
            raise ValueError(f"{where}: {key} must be a non-negative integer, got {v!r}")
        out[key] = v
    if kind in _CODED:
        if d.get("options") is not None and not isinstance(d["options"], dict):
            raise ValueError(f"{where}: options must be a JSON object")
        out["options"] = None if d.get("options") is None else {**_RECORDED_DEFAULTS, **d["options"]}
    for key in ("relative_error", "relative_error_clustered"):
        v = d.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf):
            raise ValueError(f"{where}: {key} must be a non-negative number, got {v!r}")
        out[key] = None if v is None or kind == "raw" else float(v)
    for key in ("baselines", "candidates"):
        v = d.get(key)
        if v is not None and not (isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) and n >= 0
                                                              for k, n in v.items())):
            raise ValueError(f"{where}: {key} must map names to byte counts, got {v!r}")
        out[key] = v if kind in _CODED else None
    return out


class Container:
    """An open .wl file: the directory (and metadata) read and checked, tensors read on demand.

    Use as a context manager (or call `close`). Attributes: `tensors` (the `TensorEntry` list in
    file order), `metadata` (the metadata without its per-tensor part: library version,
    options; {} if the file has none), `path`, `nbytes` (file size), `version` (3, or 1 for a
    legacy file).
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        if os.path.isdir(self.path):
            raise ValueError(f"{self.path}: is a directory, not a .wl file")
        self._file: io.BufferedReader | None = open(self.path, "rb")
        self._v1: V1File | None = None
        self._reader: Any = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _opened(self) -> io.BufferedReader:
        if self._file is None:
            raise ValueError(f"{self.path}: the container is closed")
        return self._file

    def _open(self) -> None:
        f = self._opened()
        self.nbytes = os.fstat(f.fileno()).st_size
        head = f.read(6)
        if len(head) < 4 or head[:4] != MAGIC:
            raise _malformed(self.path, f"not a weightless model file (starts with {head[:4]!r}, not {MAGIC!r})")
        if head[4:6] == b"\x01\x00":  # LEGACY: a version 1 file, read by weightless._legacy_v1
            self.version = 1
            self._open_v1()
            return
        self.version = VERSION
        try:
            self._reader = _core.ModelReader(self.path)
        except ValueError as err:  # the C++ reader's message: "malformed .wl file: ..."
            raise ValueError(f"{self.path}: {err}") from None
        meta = self._reader.metadata()
        try:
            doc = json.loads(meta.decode("utf-8")) if meta else {}
            if not isinstance(doc, dict) or not isinstance(doc.get("tensors", {}), dict):
                raise ValueError("not a JSON object with a tensors object")
            per_tensor = doc.pop("tensors", {})
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise _malformed(self.path, f"bad metadata ({err})") from None
        self.metadata: dict[str, Any] = doc
        self.tensors: list[TensorEntry] = []
        for name, dtype, codec, shape, offset, length, crc in self._reader.entries():
            kind = KINDS[codec]
            try:
                recorded = _recorded(per_tensor.get(name), f"tensor {name!r}", kind)
            except ValueError as err:
                raise _malformed(self.path, f"bad metadata ({err})") from None
            e = TensorEntry(name, kind, dtype, tuple(shape), offset, length, crc, **recorded)
            if kind in _CODED and e.kept is None:  # no metadata: the statistics come from the payload
                e = self._with_statistics(e, self._layer_of(e, self._payload_v3(len(self.tensors))))
            self.tensors.append(e)
        self._index = {e.name: i for i, e in enumerate(self.tensors)}

    def _open_v1(self) -> None:
        v1 = self._v1 = V1File(self.path, self._opened(), self.nbytes, lambda p: _malformed(self.path, p),
                               RAW_DTYPES, ENCODED_DTYPES)
        self.metadata = v1.metadata
        self.tensors = []
        for name, kind, dtype, shape, offset, length, crc, fields in v1.entries:
            try:
                recorded = _recorded(fields, f"tensor {name!r}", kind)
            except ValueError as err:
                raise _malformed(self.path, f"bad header ({err})") from None
            self.tensors.append(TensorEntry(name, kind, dtype, shape, offset, length, crc, **recorded))
        self._index = {e.name: i for i, e in enumerate(self.tensors)}

    @staticmethod
    def _with_statistics(e: TensorEntry, layer: EncodedLayer | ExactLayer) -> TensorEntry:
        if isinstance(layer, EncodedLayer):
            return dataclasses.replace(e, kept=layer.kept, clusters=len(layer.codebook), cell_bits=layer.cell_bits,
                                       false_positives=layer.false_positives)
        return dataclasses.replace(e, kept=layer.kept, clusters=len(layer.codebook))

    # -- access

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.tensors]

    def entry(self, name: str) -> TensorEntry:
        try:
            return self.tensors[self._index[name]]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path}") from None

    def _payload_v3(self, index: int) -> bytes:
        try:
            return self._reader.payload(index)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None

    def _payload(self, e: TensorEntry) -> bytes | bytearray:
        self._opened()
        if self._v1 is not None:
            return self._v1.blob(e.name, e.offset, e.nbytes, e.crc32)
        return self._payload_v3(self._index[e.name])

    def _layer_of(self, e: TensorEntry, data: bytes | bytearray) -> EncodedLayer | ExactLayer:
        try:
            if e.kind == "exact" and self._v1 is not None:
                layer: EncodedLayer | ExactLayer = ExactLayer.from_bytes(data)
            elif e.kind == "exact":  # headless in a version 3 file: rebuilt with the directory's shape
                layer = ExactLayer.from_payload(data, e.shape)
            elif self._v1 is not None:
                layer = EncodedLayer.from_bytes(data)
            else:
                layer = EncodedLayer.from_payload(data, e.shape)
        except ValueError as err:
            raise _malformed(self.path, f"tensor {e.name!r}: {err}") from None
        if layer.shape != e.shape:
            raise _malformed(self.path, f"tensor {e.name!r}: the {e.kind} layer's shape is not the tensor's")
        return layer

    def _checked_layer(self, e: TensorEntry) -> EncodedLayer | ExactLayer:
        """The layer, its statistics checked against the entry's (from a v1 header or metadata)."""
        layer = self._layer_of(e, self._payload(e))
        if self._with_statistics(e, layer) != e:
            raise _malformed(self.path, f"tensor {e.name!r}: the {e.kind} layer does not match its recorded statistics")
        return layer

    def encoded_layer(self, name: str) -> EncodedLayer:
        """The `EncodedLayer` of a tensor stored in a Bloomier filter, checked against its entry."""
        e = self.entry(name)
        if e.kind != "encoded":
            raise ValueError(f"tensor {name!r} is stored {e.kind}, not in a filter")
        layer = self._checked_layer(e)
        assert isinstance(layer, EncodedLayer)
        return layer

    def exact_layer(self, name: str) -> ExactLayer:
        """The `ExactLayer` of a tensor stored by the exact codec, checked against its entry."""
        e = self.entry(name)
        if e.kind != "exact":
            raise ValueError(f"tensor {name!r} is stored {e.kind}, not by the exact codec")
        layer = self._checked_layer(e)
        assert isinstance(layer, ExactLayer)
        return layer

    def _check_decode_size(self, entries: Sequence[TensorEntry]) -> None:
        """ValueError before anything is allocated if decoding these tensors would exceed the
        limit (`weightless.codec.max_decode_bytes`): an encoded tensor's shape is bounded by
        nothing else, since an all-zero layer of any shape is a few bytes."""
        what = f"tensor {entries[0].name!r}" if len(entries) == 1 else f"the {len(entries)} tensors"
        try:
            check_decode_size(sum(e.original_nbytes for e in entries))
        except ValueError as err:
            raise ValueError(f"{self.path}: {what}: {err}") from None

    def _read_v1(self, e: TensorEntry, threads: int | None) -> np.ndarray:
        """LEGACY: a tensor of a version 1 file, decoded in Python."""
        if e.kind != "raw":
            return _decoded(self._checked_layer(e), e, threads)
        dtype = numpy_dtype(e.dtype)
        buf = self._payload(e)
        if dtype == np.bool_ and buf.translate(None, b"\x00\x01"):  # anything but 0 and 1 left
            raise _malformed(self.path, f"tensor {e.name!r}: boolean bytes other than 0 and 1")
        if sys.byteorder == "little":
            return np.frombuffer(buf, dtype=dtype).reshape(e.shape)
        return np.frombuffer(buf, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(e.shape)

    def read(self, name: str, *, threads: int | None = None) -> np.ndarray:
        """One tensor, decoded, in its original dtype and shape."""
        e = self.entry(name)
        self._opened()
        if e.kind != "raw":
            self._check_decode_size([e])
        if self._v1 is not None:
            return self._read_v1(e, threads)
        out = np.empty(e.shape, dtype=numpy_dtype(e.dtype))
        try:  # the C++ reader: the payload's CRC and codec checks, then every codec's decoder
            self._reader.decode(self._index[name], out.reshape(-1).view(np.uint8), 0 if threads is None else threads)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None
        return out

    def read_all(self, *, threads: int | None = None) -> dict[str, np.ndarray]:
        """Every tensor in file order (the decoded size is checked for all of them first)."""
        if self.tensors:
            self._check_decode_size(self.tensors)
        return {e.name: self.read(e.name, threads=threads) for e in self.tensors}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._reader = None

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        encoded = sum(e.kind in _CODED for e in self.tensors)
        return f"Container({self.path!r}, {len(self.tensors)} tensors, {encoded} encoded, {self.nbytes} bytes)"


def _decoded(layer: EncodedLayer | ExactLayer, e: TensorEntry, threads: int | None) -> np.ndarray:
    if isinstance(layer, EncodedLayer):
        return layer.decode(threads, dtype=e.dtype)
    decoded = layer.decode()  # float32; another dtype is converted whole (nearest even)
    return decoded if e.dtype == "float32" else decoded.astype(numpy_dtype(e.dtype))


def open_container(path: PathLike) -> Container:
    """Open a .wl file: reads and checks its directory and metadata, not its tensors' payloads."""
    return Container(path)


def decompress(path: PathLike, *, threads: int | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a .wl file, in stored order: raw ones bit for bit, encoded ones decoded."""
    with Container(path) as c:
        return c.read_all(threads=threads)


class _Decoded(Mapping[str, np.ndarray]):
    """The tensors of an open container, each decoded when looked up (nothing kept)."""

    def __init__(self, container: Container, threads: int | None) -> None:
        self._container, self._threads = container, threads

    def __getitem__(self, name: str) -> np.ndarray:
        return self._container.read(name, threads=self._threads)

    def __iter__(self) -> Iterator[str]:
        return iter(self._container.names)

    def __len__(self) -> int:
        return len(self._container.tensors)


def decompress_to(path: PathLike, out_path: PathLike, *, overwrite: bool = False, threads: int | None = None) -> int:
    """Decode a .wl file into a model file (`weightless.io.save_state`: the format of out_path's
    extension) and return the number of tensors written.

    A path without an extension is written as a Hugging Face checkpoint folder; one compressed
    from such a folder gets its shards and index back, each shard decoded only when written.
    """
    with Container(path) as c:
        if model_format(out_path) != "folder":  # one file: the whole state is written at once
            save_state(c.read_all(threads=threads), out_path, overwrite=overwrite)
            return len(c.tensors)
        folder = c.metadata.get("folder") if isinstance(c.metadata.get("folder"), dict) else None
        shards = folder.get("shards") if folder is not None else None
        valid = isinstance(shards, dict) and all(isinstance(v, str) for v in shards.values())
        save_state(_Decoded(c, threads), out_path, overwrite=overwrite, shards=shards if valid else None,
                   index=bool(folder.get("index")) if folder is not None else None)
        return len(c.tensors)
