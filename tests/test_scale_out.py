"""The scale-out recipes (examples/scale_out) run on the real engines, local Ray, Dask and Spark
with 2 worker processes, and their results equal a single-process run (each script checks that
itself and exits non-zero otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "scale_out"
SMALL = ["--sequences", "96", "--batch-size", "16", "--input-size", "12", "--hidden-size", "24", "--workers", "2"]


def run_example(name: str) -> str:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *SMALL], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_ray_data_recipe_scores_as_one_process_does():
    pytest.importorskip("ray.data", reason="the Ray recipe needs ray[data] (the test extra)")
    out = run_example("ray_data.py")
    assert "Ray Data, 2 worker(s)" in out and "96 scored" in out


def test_the_dask_recipe_scores_as_one_process_does():
    pytest.importorskip("distributed", reason="the Dask recipe needs dask[distributed] (the test extra)")
    out = run_example("dask_distributed.py")
    assert "Dask, 2 worker(s)" in out and "96 scored" in out


def test_the_spark_recipe_scores_as_one_process_does():
    pytest.importorskip("pyspark", reason="the Spark recipe needs pyspark (the test extra)")
    if shutil.which("java") is None:
        pytest.skip("the Spark recipe needs a Java runtime (Debian: apt-get install default-jre-headless)")
    out = run_example("spark.py")
    assert "Spark, 2 worker(s)" in out and "96 scored" in out
