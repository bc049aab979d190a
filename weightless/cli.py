"""The `weightless` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import __version__


class CliError(Exception):
    """A problem to report in one line, with a non-zero exit code and no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightless", description=__doc__)
    parser.add_argument("--version", action="version", version=f"weightless {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo

    demo.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CliError, ValueError, OSError) as e:
        print(f"weightless {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
