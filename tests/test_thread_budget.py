"""The default thread count is what the process may use: a worker started with an affinity mask, a
cgroup CPU quota (a fake cgroup file system) or FASTLSTM_NUM_THREADS gets its own count, whether
it is spawned or forked."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

import fastlstm

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs at least 2 CPUs in the affinity mask")

REPORT = "import fastlstm; print(fastlstm.LSTM(2, 3).num_threads); print(fastlstm.build_info()['threads_source'])"


def spawned(env_changes=None, cpus=None):
    """(threads, source) that a new Python process reports."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTLSTM_NUM_THREADS", "FASTLSTM_CGROUP_ROOT")}
    env.update(env_changes or {})
    restrict = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    result = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, check=True,
                            preexec_fn=restrict)
    threads, source = result.stdout.strip().splitlines()
    return int(threads), source


@needs_two_cpus
def test_a_spawned_worker_with_an_affinity_mask_takes_its_cpus():
    assert spawned(cpus=CPUS[:1]) == (1, "1 CPU in the affinity mask")
    threads, source = spawned(cpus=CPUS[:2])
    assert threads == 2 and source.startswith("2 CPUs")


@needs_two_cpus
def test_a_cgroup_quota_caps_the_mask(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one CPU's worth
    threads, source = spawned({"FASTLSTM_CGROUP_ROOT": str(tmp_path)})
    assert threads == 1
    assert source.startswith("cgroup CPU quota 1 ")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert spawned({"FASTLSTM_CGROUP_ROOT": str(tmp_path)})[0] == len(CPUS)


def test_the_environment_variable_wins():
    assert spawned({"FASTLSTM_NUM_THREADS": "3"}) == (3, "FASTLSTM_NUM_THREADS=3")
    assert spawned({"FASTLSTM_NUM_THREADS": "3"}, cpus=CPUS[:1])[0] == 3
    assert spawned({"FASTLSTM_NUM_THREADS": "none"})[1] != "FASTLSTM_NUM_THREADS=none"  # not a count: ignored


def _count_in_child(cpu, queue):
    os.sched_setaffinity(0, {cpu})
    queue.put(fastlstm.LSTM(2, 3).num_threads)


@needs_two_cpus
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_worker_restricted_to_one_cpu_takes_one_thread(method):
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    worker = context.Process(target=_count_in_child, args=(CPUS[0], queue))
    worker.start()
    assert queue.get(timeout=60) == 1
    worker.join(timeout=60)
    assert worker.exitcode == 0


def test_build_info_reports_the_budget():
    info = fastlstm.build_info()
    assert info["default_threads"] >= 1 and info["threads_source"]
    assert fastlstm.LSTM(2, 3).num_threads == min(info["default_threads"], fastlstm._native.core.MAX_THREADS)
