"""`python -m weightless`: the same command line as `weightless`."""

import sys

from .cli import main

sys.exit(main())
