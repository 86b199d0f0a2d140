#!/usr/bin/env python3
"""Runs the fastlstm benchmark: the same as ``python -m fastlstm bench [options]``.

    python benchmarks/run.py --repeats 5 --json results.json --plot speedup.png

The logic lives in the package (fastlstm/bench/) so that an installed wheel can run it too.
"""

import sys

from fastlstm import bench

if __name__ == "__main__":
    sys.exit(bench.main(prog="benchmarks/run.py"))
