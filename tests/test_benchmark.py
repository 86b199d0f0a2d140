"""The benchmark (python -m fastlstm bench) runs, checks fastlstm against torch before timing and
writes every row to JSON: a quick run of its small cases, one sample each."""

import json
import os
import subprocess
import sys


def test_the_benchmark_runs_its_small_cases_and_verifies_them(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "fastlstm", "bench", "--cases", "S1,S7,X1", "--repeats", "1", "--min-time", "0",
         "--no-ort", "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
        # A variable that changes what runs is reported (this one only matters on a GPU).
        env=dict(os.environ, FASTLSTM_CUDA_GRAPHS="1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["environment"]["FASTLSTM_CUDA_GRAPHS"] == "1"
    assert "environment: " in result.stdout and "FASTLSTM_CUDA_GRAPHS=1" in result.stdout
    rows = {row["case"]: row for row in report["rows"]}
    assert set(rows) == {"S1", "S7", "S7-stream", "X1", "X1-padded"}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["status"])
        assert row["max_abs_diff"]["torch"] <= 1e-4, (name, row["max_abs_diff"])
        assert row["ms"]["fastlstm"] > 0 and row["ms"]["torch"] > 0, (name, row["ms"])
        # %GEMM against NumPy's rate sampled between the row's own samples.
        assert len(row["gemm_samples_gflops"]) == 1 and row["gemm_gflops"] == row["gemm_samples_gflops"][0] > 0
        assert abs(row["pct_gemm"] - 100 * row["gflops"] / row["gemm_gflops"]) < 1e-9
    assert rows["S7"]["per"] == "step" and rows["S1"]["per"] == "call"
    assert "S7-stream" in result.stdout and "stream.step" in result.stdout


def test_the_benchmark_of_weight_formats_times_fastlstm_and_the_peers_quantized_lstms(tmp_path):
    out = tmp_path / "weights.json"
    result = subprocess.run(
        [sys.executable, "-m", "fastlstm", "bench", "--weights", "int8,float16", "--cases", "S1",
         "--repeats", "1", "--min-time", "0", "--no-ort", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row["weight_format"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"int8", "float16"}
    assert set(rows["int8"]["ms"]) == {"fastlstm float32", "fastlstm int8", "torch int8"}
    assert set(rows["float16"]["ms"]) == {"fastlstm float32", "fastlstm float16", "torch float16"}
    # Errors against torch's float32 LSTM: fastlstm's int8 at most half of torch's int8 on S1.
    assert rows["int8"]["error"]["fastlstm int8"] <= 0.5 * rows["int8"]["error"]["torch int8"]
    assert rows["float16"]["error"]["fastlstm float16"] <= 3e-4
    assert "fastlstm int8" in result.stdout and "torch float16" in result.stdout


def test_the_stream_serving_benchmark_times_the_pool_the_batcher_and_per_stream_steps(tmp_path):
    out = tmp_path / "streams.json"
    result = subprocess.run(
        [sys.executable, "-m", "fastlstm", "bench", "--streams", "--stream-count", "30", "--threads", "1",
         "--repeats", "1", "--min-time", "0", "--no-ort", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "streams" and report["streams"] == 30
    timed = {(row["size"], row["tool"]): row for row in report["rows"] if "tool" in row}
    for size in (128, 256):
        for tool in ("stream(N) batch", "pool all", "pool poisson", "pool churn", "per-stream", "torch per-stream"):
            assert timed[size, tool]["steps_per_s"] > 0
            assert 0 < timed[size, tool]["tick_p50_s"] <= timed[size, tool]["tick_p99_s"]
        assert timed[size, "pool all"]["steps_per_tick"] == 30
        batcher = timed[size, "batcher"]
        assert batcher["steps_per_s"] > 0 and 0 < batcher["p50_us"] <= batcher["p99_us"]
    goals = [row["goal"] for row in report["rows"] if "goal" in row]
    assert any("pool all / stream(N) batch" in goal for goal in goals)
    assert "ort per-stream" in result.stdout and "skipped" in result.stdout
