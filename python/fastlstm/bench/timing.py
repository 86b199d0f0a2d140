"""Timing: calibrated, interleaved samples of several tools; settling between them; the NumPy GEMM
rate sampled alongside (the yardstick of %GEMM)."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np


GEMM_SIZE = 2048


def _time_once(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn: Callable[[], Any], min_time: float, max_number: int = 10_000) -> int:
    """How many calls make one timed sample last at least `min_time` seconds."""
    once = _time_once(fn, 1)
    if once >= min_time:
        return 1
    return int(min(max_number, math.ceil(min_time / max(once, 1e-7))))


def settle(min_gap: float = 0.01, max_wait: float = 1.0, window: float = 0.005) -> float:
    """Sleeps at least `min_gap`, then until this process's threads are idle (under 5 % of a core
    over `window`) or `max_wait` has passed; returns the seconds waited. ONNX Runtime's workers,
    for one, spin for tens of milliseconds after a run and would steal a core from the next tool."""
    start = time.perf_counter()
    time.sleep(min_gap)
    while time.perf_counter() - start < max_wait:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(window)
        if time.process_time() - cpu < 0.05 * (time.perf_counter() - wall):
            break
    return time.perf_counter() - start


def interleaved(
    fns: Dict[str, Callable[[], Any]],
    repeats: int,
    min_time: float = 0.05,
    gap: float = 0.01,
    progress: Optional[Callable[[str], None]] = None,
    probes: Optional[Dict[str, Callable[[], float]]] = None,
) -> Dict[str, dict]:
    """Times every function round-robin, `repeats` samples each; per tool: median seconds per call,
    all samples and calls per sample. An untimed pause between samples (`gap` at least, then until
    the process is idle, see settle) lets the previous tool's spinning worker threads go idle before
    the next tool starts; one untimed call then precedes each sample, so that waking a tool's
    sleeping workers (which can cost fastlstm ~10 ms at 2 threads) is not part of the sample.
    `probes` take a sample of their own in every round (each returns the seconds it measured)."""
    probes = probes or {}
    numbers = {}
    for name, fn in fns.items():
        settle(gap)
        fn()  # untimed: the first call after idle wakes sleeping worker threads
        numbers[name] = calibrate(fn, min_time)
    samples: Dict[str, List[float]] = {name: [] for name in [*fns, *probes]}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            for name, fn in fns.items():
                if progress:
                    progress(f"{name} {rep + 1}/{repeats}")
                settle(gap)
                fn()  # untimed warm call, so a sample measures steady state, not wake-up
                samples[name].append(_time_once(fn, numbers[name]))
            for name, probe in probes.items():
                settle(gap)
                samples[name].append(probe())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        name: {"median_s": float(np.median(s)), "samples_s": s, "calls_per_sample": numbers.get(name, 1)}
        for name, s in samples.items()
    }


class ForeignLoad:
    """CPU time that other processes used while a block ran, from /proc/stat (Linux): the busy
    time of every core minus this process's own. Divided by the wall time it is the number of
    cores others kept busy, a direct measure of how noisy the measurement was (None elsewhere)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
        times = os.times()
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), times.user + times.system

    def cores(self, also_ours: float = 0.0) -> Optional[float]:
        """`also_ours`: CPU seconds that this benchmark's own child processes used meanwhile."""
        end = self._read()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        foreign = (end[1] - self.start[1]) - (end[2] - self.start[2]) - also_ours
        return max(0.0, foreign) / (end[0] - self.start[0])


def gemm_rate(threads: Optional[int], size: int = GEMM_SIZE, repeats: int = 7) -> Tuple[float, str]:
    """NumPy float32 GEMM rate in GFLOP/s (median over `repeats` size^3 matmuls) with `threads` BLAS
    threads, measured in a child process so the BLAS thread count can be set; falls back to this
    process (BLAS's own thread count) if the child fails. Returns (rate, how it was measured)."""
    code = (
        "import sys, time, numpy as np\n"
        "n, reps = int(sys.argv[1]), int(sys.argv[2])\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((n, n), dtype=np.float32)\n"
        "b = rng.standard_normal((n, n), dtype=np.float32)\n"
        "c = np.empty((n, n), dtype=np.float32)\n"
        "np.matmul(a, b, out=c)\n"
        "ts = []\n"
        "for _ in range(reps):\n"
        "    t = time.perf_counter(); np.matmul(a, b, out=c); ts.append(time.perf_counter() - t)\n"
        "print(2.0 * n ** 3 / float(np.median(ts)) / 1e9)\n"
    )
    env = dict(os.environ)
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            env[var] = str(threads)
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(size), str(repeats)],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )
        return float(result.stdout.strip().splitlines()[-1]), f"{threads or 'default'} BLAS threads"
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        c = np.empty_like(a)
        np.matmul(a, a, out=c)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, a, out=c)
            ts.append(time.perf_counter() - t)
        return 2.0 * size**3 / float(np.median(ts)) / 1e9, "in-process, BLAS default threads"


class GemmProbe:
    """NumPy's float32 GEMM, sampled between the tools' samples so that %GEMM compares rates the
    machine gave in the same minutes (on a shared machine the rate moves by 30 % between runs). A
    child process, because the BLAS thread count must be set before NumPy loads: per request it
    runs one size^3 matmul, waits until its BLAS threads stop spinning, and answers the matmul's
    seconds. `cpu_seconds` is the CPU time the child has used (not the machine's other load).
    `start` gives None when the child cannot run."""

    CODE = (
        "import sys, time, numpy as np\n"
        "n = int(sys.argv[1])\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((n, n), dtype=np.float32)\n"
        "b = rng.standard_normal((n, n), dtype=np.float32)\n"
        "c = np.empty((n, n), dtype=np.float32)\n"
        "np.matmul(a, b, out=c)\n"
        "print('ready', time.process_time(), flush=True)\n"
        "for line in sys.stdin:\n"
        "    t = time.perf_counter(); np.matmul(a, b, out=c); seconds = time.perf_counter() - t\n"
        "    for _ in range(200):  # until the process is idle (its BLAS threads spin after a call)\n"
        "        cpu, wall = time.process_time(), time.perf_counter(); time.sleep(0.005)\n"
        "        if time.process_time() - cpu < 0.05 * (time.perf_counter() - wall): break\n"
        "    print(seconds, time.process_time(), flush=True)\n"
    )

    def __init__(self, process: subprocess.Popen, cpu_seconds: float) -> None:
        self.process = process
        self.cpu_seconds = cpu_seconds

    @classmethod
    def start(cls, threads: int, size: int = GEMM_SIZE) -> Optional["GemmProbe"]:
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            env[var] = str(threads)
        try:
            process = subprocess.Popen([sys.executable, "-c", cls.CODE, str(size)], env=env, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            return None
        assert process.stdout is not None
        words = process.stdout.readline().split()
        if len(words) != 2 or words[0] != "ready":
            process.kill()
            process.wait()
            return None
        return cls(process, float(words[1]))

    def __call__(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        seconds, self.cpu_seconds = map(float, self.process.stdout.readline().split())
        return seconds

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
