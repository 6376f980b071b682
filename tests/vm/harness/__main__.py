"""Run the manual front end: ``python -m tests.vm.harness --help``."""

import sys

from .cli import _main

sys.exit(_main())
