#!/usr/bin/env python3
"""Runs the fastlstm benchmark: the same as ``python -m fastlstm bench [options]``.

    python benchmarks/run.py --repeats 5 --json results.json --plot speedup.png

The logic lives in fastlstm/benchmark.py so that an installed wheel can run it too.
"""

import sys

from fastlstm import benchmark

if __name__ == "__main__":
    sys.exit(benchmark.main(prog="benchmarks/run.py"))
