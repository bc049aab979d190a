"""The `weightless` command line.

  weightless compress MODEL -o MODEL.wl [--sparsity S] [--clusters K] [--cell-bits T] ...
  weightless decompress MODEL.wl -o MODEL.{npz,safetensors,pt}
  weightless inspect MODEL.wl [--baselines] [--json]
  weightless demo
  weightless reproduce --model lenet-300-100 --out DIR [--quick]

Models are read and written as .npz, .safetensors or PyTorch .pt/.pth state dicts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__

if TYPE_CHECKING:  # the commands import their modules when they run, so `--help` stays fast
    from .container import CompressionReport, TensorEntry

    Subcommands = argparse._SubParsersAction["_Parser"]


class CliError(Exception):
    """A problem to report in one line, with a non-zero exit code and no traceback."""


class _UsageError(Exception):
    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage and exits; the CLI's contract is one line, then exit code 2
    # (argparse's, and the usual one for a usage error). Subparsers inherit this class
    # (add_subparsers uses the parent's class).
    def error(self, message: str) -> NoReturn:
        raise _UsageError(self.prog, message)


#: Exit codes: 1 for a failure of the work, 2 for a command line that cannot be run, 141 (128 +
#: SIGPIPE) when the reader of stdout went away, as a tool killed by SIGPIPE would report.
EXIT_FAILURE, EXIT_USAGE, EXIT_BROKEN_PIPE = 1, 2, 141


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="weightless", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"weightless {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_compress(sub)
    _add_decompress(sub)
    _add_inspect(sub)
    from .experiments import add_commands  # demo, reproduce: light to register, torch only when run

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"{e.prog}: error: {_one_line(e)} (see '{e.prog} --help')", file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:  # bare `weightless`
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (CliError, ValueError, OSError, ImportError) as e:
        print(f"weightless {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE
    except MemoryError as e:
        print(f"weightless {args.command}: error: out of memory{f' ({_one_line(e)})' if str(e) else ''}",
              file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"weightless {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail on the closed pipe
    again (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass


def _warn(command: str, message: str) -> None:
    print(f"weightless {command}: warning: {message}", file=sys.stderr)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n")) or type(e).__name__


# --------------------------------------------------------------------------- helpers


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.abspath(a) == os.path.abspath(b)


def _check_input(path: str, folder_ok: bool = False) -> None:
    """The input exists (and is a file, unless a checkpoint folder may be): checked before
    anything about the output."""
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if os.path.isdir(path):
        if not folder_ok:
            raise CliError(f"{path}: is a directory, not a .wl file")
        from .io import HF_INDEX, HF_WEIGHTS  # here, not at the top: `--help` stays fast

        if not any(os.path.exists(os.path.join(path, f)) for f in (HF_WEIGHTS, HF_INDEX)):
            raise CliError(f"{path}: is a directory, not a model file or a checkpoint folder (no model.safetensors "
                           "or model.safetensors.index.json)")


def _check_output(input_path: str, output: str, force: bool, *, input_folder: bool, output_folder: bool) -> None:
    """Errors that are cheap to find before any work: the input is missing, the output is the
    input, or exists. A checkpoint folder may be the input of compress, the output of decompress."""
    _check_input(input_path, folder_ok=input_folder)
    if _same_file(input_path, output):
        raise CliError(f"the output {output} is the input file")
    if os.path.isdir(output) and not output_folder:
        raise CliError(f"the output {output} is a directory")
    if os.path.exists(output) and not force:
        raise CliError(f"{output} exists (use --force to overwrite it)")


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _factor(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _fmt_factor(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """Columns sized to their content; the first `left` columns left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())


# --------------------------------------------------------------------------- compress


def _add_compress(sub: Subcommands) -> None:
    p = sub.add_parser("compress", help="encode a model's weight matrices into a .wl file",
                       description="Encode the chosen layers of a model (.npz, .safetensors, .pt/.pth) with "
                                   "Weightless and store every other tensor exactly, in one .wl file.")
    p.add_argument("input", help="the model file")
    p.add_argument("-o", "--output", required=True, help="the .wl file to write")
    p.add_argument("--layers", nargs="+", action="extend", metavar="NAME",
                   help="tensors to encode, by name or glob pattern ('fc*.weight'); may be repeated (default: "
                        "floating tensors with 2 or more dimensions and at least 1024 elements)")
    prune = p.add_mutually_exclusive_group()
    prune.add_argument("--sparsity", type=float, metavar="S",
                       help="fraction of each layer's weights to prune, in [0, 1) (default: none, "
                            "which the command warns about)")
    prune.add_argument("--threshold", type=float, metavar="X", help="prune the weights with |w| <= X")
    p.add_argument("--clusters", type=int, metavar="K", help="k-means clusters per layer (default 16)")
    cells = p.add_mutually_exclusive_group()
    cells.add_argument("--cell-bits", type=int, metavar="T", help="bits per filter cell t")
    cells.add_argument("--fp-rate", type=float, metavar="P",
                       help="expected fraction of zero weights read back as nonzero, from which t is chosen "
                            "(default 1/64)")
    p.add_argument("--codec", choices=("auto", "bloomier", "exact"), default="auto",
                   help="how each layer is stored: the Weightless filter (bloomier), the exact codec, or the smaller "
                        "of the two (auto, the default; the filter only within --max-error)")
    p.add_argument("--max-error", type=float, metavar="E",
                   help="with --codec auto, the filter's largest relative error against the pruned, clustered layer "
                        "(its false positives; default 0.5)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the clustering and the filters (default 0)")
    p.add_argument("--arity", type=int, choices=(3, 4),
                   help="filter cells per key (default 4: ~1.035 cells per key; 3 needs ~1.11)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads per encoded tensor (default: all cores; 1 with --jobs)")
    p.add_argument("--jobs", type=int, metavar="N", default=1,
                   help="encode N tensors at once, in N processes (default 1); the file is the same")
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--baselines", action="store_true",
                   help="also size CSR + zstd of each layer's kept weights (slower; Deep Compression style is "
                        "always sized), recorded in the file for inspect --baselines")
    p.add_argument("--no-metadata", action="store_true",
                   help="write no metadata (options, errors, baselines): the smallest file; inspect then shows "
                        "only what decoding needs")
    p.add_argument("--small-float16", type=int, metavar="N",
                   help="store float tensors that are not encoded and have at most N elements (biases, norms) as "
                        "float16: LOSSY (about 3 significant digits)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_run_compress)


def _want_progress(args: argparse.Namespace) -> bool:
    if args.json or not sys.stderr.isatty():
        return False
    try:
        import tqdm  # noqa: F401  -- a bar is a nicety, not worth an error when missing
    except ImportError:
        return False
    return True


# Above this expected fraction of zero weights read back as spurious weights, the command warns;
# at or above the second, it refuses (most of the pruned weights would come back nonzero).
_WARN_FP_RATE, _REFUSE_FP_RATE = 1 / 8, 1 / 2


def _check_compress_settings(args: argparse.Namespace) -> list[str]:
    """Refuse (CliError) settings that cannot be meant; return warnings for doubtful ones."""
    from .codec import choose_cell_bits

    warnings = []
    if args.sparsity is not None:
        if not 0.0 <= args.sparsity < 1.0:
            raise CliError(f"--sparsity {args.sparsity:g}: must be in [0, 1) "
                           f"({'1 prunes every weight' if args.sparsity == 1 else 'a fraction of the weights'})")
        if args.sparsity == 0.0:
            warnings.append("--sparsity 0 prunes nothing: every weight is kept and stored in the filter")
    elif args.threshold is None:
        warnings.append("neither --sparsity nor --threshold given: nothing is pruned, so every weight is kept "
                        "and stored in the filter (try --sparsity 0.9)")
    if args.threshold is not None and not args.threshold >= 0.0:
        raise CliError(f"--threshold {args.threshold:g}: must be at least 0")
    clusters = 16 if args.clusters is None else args.clusters
    if clusters < 1:
        raise CliError(f"--clusters {clusters}: must be at least 1")
    if args.cell_bits is not None:
        rate, flag = clusters / 2.0**args.cell_bits, f"--cell-bits {args.cell_bits}"
    elif args.fp_rate is not None:
        if not 0.0 < args.fp_rate < 1.0:
            raise CliError(f"--fp-rate {args.fp_rate:g}: must be in (0, 1)")
        rate, flag = args.fp_rate, f"--fp-rate {args.fp_rate:g}"
    else:
        return warnings
    suggestion = choose_cell_bits(clusters, 1 / 64)
    if rate >= _REFUSE_FP_RATE:
        raise CliError(f"{flag} with {clusters} clusters: {min(rate, 1.0):.0%} of the pruned weights would read "
                       f"back as nonzero (use --cell-bits {suggestion} or more, or --fp-rate 0.01)")
    if rate > _WARN_FP_RATE:
        warnings.append(f"{flag} with {clusters} clusters: about {rate:.0%} of the pruned weights will read back "
                        f"as nonzero (--cell-bits {suggestion} gives 1/64)")
    return warnings


def _run_compress(args: argparse.Namespace) -> None:
    from .container import compress

    _check_output(args.input, args.output, args.force, input_folder=True, output_folder=False)
    if not args.output.lower().endswith(".wl"):
        raise CliError(f"the output {args.output} must end in .wl")
    # Refusals now, before any work; warnings after the report, so that a failure stays one line.
    warnings = _check_compress_settings(args)
    if args.jobs < 1:
        raise CliError(f"--jobs {args.jobs}: must be at least 1")
    names = ("sparsity", "threshold", "clusters", "cell_bits", "fp_rate", "seed", "arity", "threads")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(ProcessPoolExecutor(args.jobs)) if args.jobs > 1 else None
        if args.max_error is not None:
            options["max_error"] = args.max_error
        report = compress(args.input, args.output, layers=args.layers, overwrite=args.force,
                          progress=_want_progress(args), executor=executor, baselines=args.baselines,
                          codec=args.codec, metadata=not args.no_metadata, small_float16=args.small_float16,
                          **options)
    if args.json:
        print(json.dumps(_compress_json(report), indent=2))
        _warn_after_compress(warnings, report)
        return
    rows = []
    for e in report.encoded:
        b, c = e.baselines or {}, e.candidates or {}
        zstd = [_fmt_bytes(b.get("csr_zstd"))] if args.baselines else []
        false_positives = (f"{e.false_positives:,} ({_expected_false_positives(e):,.0f})"
                           if e.false_positives is not None else "0")
        rows.append([e.name, _shape(e.shape), f"{_density(e):.2%}", _codec_name(e), f"{e.nbytes:,}",
                     _fmt_bytes(c.get("bloomier")), _fmt_bytes(c.get("exact")), _fmt_bytes(b.get("deep_compression")),
                     *zstd, false_positives, _fmt_error(e.relative_error), _fmt_error(e.relative_error_clustered),
                     _fmt_factor(_factor(e.original_nbytes, e.nbytes))])
    if rows:
        _print_table(["layer", "shape", "density", "codec", "bytes", "filter", "exact", "DC-style"]
                     + (["CSR+zstd"] if args.baselines else [])
                     + ["false pos. (expected)", "rel. error", "vs clustered", "vs input"], rows)
    else:
        print("no layer was encoded (every tensor is stored as it is)")
    raw = [e for e in report.tensors if e.kind == "raw"]
    if raw:
        print(f"{len(raw)} other tensor(s) stored exactly: {sum(e.nbytes for e in raw):,} bytes")
    half = [e for e in report.tensors if e.kind == "float16"]
    if half:
        print(f"{len(half)} small tensor(s) stored as float16 (lossy): {sum(e.nbytes for e in half):,} bytes")
    print(f"total: {report.original_bytes:,} bytes -> {report.compressed_bytes:,} bytes "
          f"({_fmt_factor(_factor(report.original_bytes, report.compressed_bytes))}), wrote {report.path}")
    _warn_after_compress(warnings, report)


def _warn_after_compress(warnings: list[str], report: CompressionReport) -> None:
    warnings = warnings + [f"layer {e.name}: every weight was pruned; it decodes to zeros and false positives"
                           for e in report.encoded if e.kept == 0]
    for e in report.encoded:
        dc = (e.baselines or {}).get("deep_compression")
        if e.kind == "encoded" and dc is not None and e.kept and dc < e.nbytes:
            warnings.append(f"layer {e.name}: the filter ({e.nbytes:,} bytes) is larger than Deep Compression style "
                            f"storage of the same weights ({dc:,} bytes)")
    for message in warnings:
        _warn("compress", message)


def _codec_name(e: TensorEntry) -> str:
    return f"filter t={e.cell_bits}" if e.kind == "encoded" else e.kind


def _encoding(e: TensorEntry) -> tuple[int, int, int]:
    """kept, clusters and cell_bits of a filter entry (the reader checked they are present)."""
    assert e.kept is not None and e.clusters is not None and e.cell_bits is not None, e
    return e.kept, e.clusters, e.cell_bits


def _density(e: TensorEntry) -> float:
    return (e.kept or 0) / e.size if e.size else 0.0


def _expected_false_positives(e: TensorEntry) -> float:
    """Each zero weight reads a random t-bit word, a false positive when it is one of the k codes."""
    kept, clusters, cell_bits = _encoding(e)
    return (e.size - kept) * clusters / 2.0**cell_bits


def _compress_json(report: CompressionReport) -> dict[str, Any]:
    return {
        "output": report.path,
        "layers": [_entry_json(e) for e in report.tensors],
        "total": {"tensors": len(report.tensors), "encoded": len(report.encoded),
                  "original_bytes": report.original_bytes, "file_bytes": report.compressed_bytes,
                  "compression": _factor(report.original_bytes, report.compressed_bytes)},
    }


def _entry_json(e: TensorEntry) -> dict[str, Any]:
    d: dict[str, Any] = {"name": e.name, "shape": list(e.shape), "dtype": e.dtype, "kind": e.kind,
                         "nbytes": e.nbytes}
    if e.kind == "float16":
        d.update(codec="float16", relative_error=e.relative_error,
                 compression_vs_input=_factor(e.original_nbytes, e.nbytes))
    if e.kind in ("encoded", "exact"):
        d.update(codec="bloomier" if e.kind == "encoded" else e.kind, density=_density(e), kept=e.kept,
                 clusters=e.clusters, bits_per_kept_weight=_factor(8 * e.nbytes, e.kept or 0),
                 compression_vs_input=_factor(e.original_nbytes, e.nbytes), options=e.options,
                 relative_error=e.relative_error, relative_error_clustered=e.relative_error_clustered,
                 baselines=e.baselines, candidates=e.candidates)
    if e.kind == "encoded":
        d.update(cell_bits=e.cell_bits, false_positives=e.false_positives,
                 expected_false_positives=_expected_false_positives(e))
    return d


# --------------------------------------------------------------------------- decompress


def _add_decompress(sub: Subcommands) -> None:
    p = sub.add_parser("decompress", help="decode a .wl file back to a model file",
                       description="Decode every tensor of a .wl file and write them as a state dict; the "
                                   "output format follows its extension (.npz, .safetensors, .pt/.pth).")
    p.add_argument("input", help="the .wl file")
    p.add_argument("-o", "--output", required=True, help="the model file to write")
    p.add_argument("--threads", type=int, metavar="N", help="threads to decode with (default: all cores)")
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.set_defaults(run=_run_decompress)


def _run_decompress(args: argparse.Namespace) -> None:
    from .container import decompress_to
    from .io import check_format

    _check_output(args.input, args.output, args.force, input_folder=False, output_folder=True)
    check_format(args.output, writing=True)  # an unknown extension or missing package fails before decoding
    count = decompress_to(args.input, args.output, overwrite=args.force, threads=args.threads)
    print(f"wrote {args.output} ({count} tensors)")


# --------------------------------------------------------------------------- inspect

_BASELINES_NOTE = (
    "Baselines are the sizes recorded when the file was written, of Deep Compression style storage "
    "(5-bit relative indices, Huffman) and of CSR + zstd (compress --baselines) of the very kept weights "
    "and codes the layer encodes, false positives excluded."
)


def _add_inspect(sub: Subcommands) -> None:
    p = sub.add_parser("inspect", help="describe the tensors of a .wl file",
                       description="Describe every tensor of a .wl file from its header, without decoding anything.",
                       epilog="--baselines: " + _BASELINES_NOTE)
    p.add_argument("input", help="the .wl file")
    p.add_argument("--baselines", action="store_true",
                   help="also show the size each encoded layer would take as Deep Compression style storage and "
                        "as CSR + zstd (as recorded by compress)")
    p.add_argument("--json", action="store_true", help="print JSON to stdout")
    p.set_defaults(run=_run_inspect)


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_error(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _run_inspect(args: argparse.Namespace) -> None:
    from .container import open_container

    _check_input(args.input)
    with open_container(args.input) as c:
        layers = [_entry_json(e) for e in c.tensors]
        original = sum(e.original_nbytes for e in c.tensors)
        total = {"tensors": len(c.tensors), "encoded": sum(e.kind in ("encoded", "exact") for e in c.tensors),
                 "original_bytes": original, "file_bytes": c.nbytes, "compression": _factor(original, c.nbytes)}
        metadata = c.metadata
    if args.json:
        out = {"file": args.input, "metadata": metadata, "layers": layers, "total": total}
        if args.baselines:
            out["baselines_note"] = _BASELINES_NOTE
        print(json.dumps(out, indent=2))
        return

    header = ["tensor", "shape", "dtype", "codec", "density", "k", "t", "bytes", "bits/kept", "false pos.",
              "rel. error", "vs input", "filter", "exact"]
    if args.baselines:
        header += ["Deep Compr.", "CSR+zstd"]
    rows = []
    for d in layers:
        coded, filtered = d["kind"] in ("encoded", "exact"), d["kind"] == "encoded"
        bits = d.get("bits_per_kept_weight")
        cand = d.get("candidates") or {}
        row = [d["name"], _shape(d["shape"]), d["dtype"], d.get("codec", "raw"),
               f"{d['density']:.2%}" if coded else "-",
               str(d["clusters"]) if coded else "-",
               str(d["cell_bits"]) if filtered else "-",
               f"{d['nbytes']:,}",
               f"{bits:.2f}" if bits is not None else "-",
               f"{d['false_positives']:,}" if filtered else "0" if coded else "-",
               _fmt_error(d.get("relative_error")),
               _fmt_factor(d.get("compression_vs_input")),
               _fmt_bytes(cand.get("bloomier")), _fmt_bytes(cand.get("exact"))]
        if args.baselines:
            b = d.get("baselines") or {}
            row += [_fmt_bytes(b.get("deep_compression")), _fmt_bytes(b.get("csr_zstd"))]
        rows.append(row)
    _print_table(header, rows, left=4)
    print(f"total: {total['tensors']} tensors ({total['encoded']} encoded), {original:,} bytes uncompressed, "
          f"{c.nbytes:,} bytes in the file ({_fmt_factor(total['compression'])})")
    if args.baselines:
        print(f"note: {_BASELINES_NOTE}")


if __name__ == "__main__":
    sys.exit(main())
