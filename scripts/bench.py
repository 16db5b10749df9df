"""`make bench`: places orders over HTTP and measures what the saga costs and how long it takes.

The benchmark itself is the package beside this script, scripts/benchmark/ (its docstring says what it runs and
where each part lives); `scripts/bench.py --help` lists every option.
"""

from __future__ import annotations

import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
