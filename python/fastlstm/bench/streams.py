"""``python -m fastlstm bench --streams``: one small model serving many streams, each stepping at
Poisson-random times (the shape of voice-activity or wake-word services), timed in one process,
interleaved. Tools, at 1,000 open streams of an I = H model (128: Silero VAD's LSTM cell; 256):

- ``stream(N) batch``: one ``lstm.stream(N).step`` of all N streams (the batched step's cost);
- ``pool all``: ``pool.step`` of all N streams, in a new random order each tick;
- ``pool poisson``: ``pool.step`` of the streams that have a step due at a tick (each with
  probability 1/2: Poisson arrivals sampled at the tick);
- ``pool churn``: the same, with 1 % of the streams closing and as many opening every tick;
- ``per-stream``: ``stream(1).step`` of each of the N streams in turn;
- ``ort per-stream`` / ``torch per-stream``: the peers, one call per stream, (h, c) fed back;
- ``batcher``: ``StepBatcher.submit`` of single steps from a driver thread, every stream always
  having one step in flight (throughput), and Poisson arrivals at half the pool's rate (latency
  from submit to result, as the driver sees it: an upper bound).

Throughput is steps per second; "per tick" the median time of one call of the tool (one tick:
all the steps it serves), and the p50 / p99 of single ticks after the interleaved samples: a step
that arrives while a tick runs is served by the next one, so its latency is at most two ticks."""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Deque, Dict, List, Tuple

import numpy as np

import fastlstm

from .peers import export_onnx, import_ort, import_torch, ort_session
from .report import machine_info, versions
from .timing import ForeignLoad, interleaved

SIZES = (128, 256)
STREAMS = 1000
CHURN = 0.01  # of the open streams closing (and as many opening) every tick in "pool churn"
DUE = 0.5  # the chance that a stream has a step due at a tick
LATENCY_RATE_CAP = 100_000.0  # steps/s offered to the batcher in its latency run, at most


def _random_model(size: int, threads: int, seed: int) -> fastlstm.LSTM:
    model = fastlstm.LSTM(size, size, num_threads=threads)
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(size)
    model.load_state_dict({name: rng.uniform(-bound, bound, value.shape).astype(np.float32)
                           for name, value in model.state_dict().items()})
    return model


def _pool_tools(model: fastlstm.LSTM, count: int, rng: np.random.Generator) -> Dict[str, Callable[[], int]]:
    """fastlstm's tools; each call runs one tick and returns the steps it took."""
    size = model.input_size
    x_all = rng.standard_normal((count, size), dtype=np.float32)
    batch = model.stream(count)
    pool = model.stream_pool(count)
    ids = np.array([pool.open() for _ in range(count)], dtype=np.int64)
    out = np.empty((count, model.hidden_size), np.float32)
    solo = [model.stream(1) for _ in range(count)]
    rows = [x_all[i:i + 1] for i in range(count)]

    def batched() -> int:
        batch.step(x_all, out=out)
        return count

    def pool_all() -> int:
        order = rng.permutation(ids)
        pool.step(order, x_all, out=out)
        return count

    def pool_poisson() -> int:
        due = ids[rng.random(count) < DUE]
        pool.step(due, x_all[:len(due)], out=out[:len(due)])
        return len(due)

    churn_pool = model.stream_pool(count)  # its streams come and go
    churn_ids = np.array([churn_pool.open() for _ in range(count)], dtype=np.int64)

    def pool_churn() -> int:
        leaving = rng.choice(count, size=max(1, int(CHURN * count)), replace=False)
        for index in leaving:
            churn_pool.close(int(churn_ids[index]))
            churn_ids[index] = churn_pool.open()
        due = churn_ids[rng.random(count) < DUE]
        churn_pool.step(due, x_all[:len(due)], out=out[:len(due)])
        return len(due)

    def per_stream() -> int:
        for stream, row in zip(solo, rows):
            stream.step(row)
        return count

    return {"stream(N) batch": batched, "pool all": pool_all, "pool poisson": pool_poisson,
            "pool churn": pool_churn, "per-stream": per_stream}


def _peer_tools(model: fastlstm.LSTM, count: int, threads: int, torch, ort,
                rng: np.random.Generator) -> Tuple[Dict[str, Callable[[], int]], Dict[str, str]]:
    tools: Dict[str, Callable[[], int]] = {}
    skipped: Dict[str, str] = {}
    size = model.input_size
    xs = rng.standard_normal((count, 1, 1, size), dtype=np.float32)
    if torch is None:
        return tools, {"torch": "not importable", "ort": "needs torch to export the model"}
    module = torch.nn.LSTM(size, size).eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            getattr(module, name).copy_(torch.from_numpy(np.array(value)))
    torch.set_num_threads(threads)
    states = [(torch.zeros(1, 1, size), torch.zeros(1, 1, size)) for _ in range(count)]
    torch_xs = [torch.from_numpy(x) for x in xs]

    def torch_per_stream() -> int:
        with torch.no_grad():
            for i in range(count):
                _, states[i] = module(torch_xs[i], states[i])
        return count

    tools["torch per-stream"] = torch_per_stream
    if ort is None:
        skipped["ort"] = "not importable"
        return tools, skipped
    try:
        onnx_model = export_onnx(torch, module, (torch_xs[0], states[0]), ["input", "h_0", "c_0"])
        session = ort_session(ort, onnx_model, threads)
    except Exception as error:  # noqa: BLE001 - ORT is optional
        skipped["ort"] = str(error)[:200]
        return tools, skipped
    feeds = [{"input": xs[i], "h_0": np.zeros((1, 1, size), np.float32), "c_0": np.zeros((1, 1, size), np.float32)}
             for i in range(count)]

    def ort_per_stream() -> int:
        for feed in feeds:
            _, h, c = session.run(None, feed)
            feed["h_0"], feed["c_0"] = h, c
        return count

    tools["ort per-stream"] = ort_per_stream
    return tools, skipped


def _batcher_throughput(model: fastlstm.LSTM, count: int, seconds: float, max_delay_us: float) -> dict:
    """Every stream with one step in flight, resubmitted as soon as its result is read."""
    pool = model.stream_pool(count)
    ids = [pool.open() for _ in range(count)]
    x = np.random.default_rng(1).standard_normal((count, model.input_size), dtype=np.float32)
    with fastlstm.StepBatcher(pool, max_batch=count, max_delay_us=max_delay_us) as batcher:
        futures = [batcher.submit(sid, x[i]) for i, sid in enumerate(ids)]
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for i, sid in enumerate(ids):
                futures[i].result()
                futures[i] = batcher.submit(sid, x[i])
            steps += count
        elapsed = time.perf_counter() - start
        for future in futures:
            future.result()
        batches = batcher.batches
    return {"steps_per_s": steps / elapsed, "mean_batch": batcher.steps / max(1, batches)}


def _batcher_latency(model: fastlstm.LSTM, count: int, rate: float, seconds: float, max_delay_us: float) -> dict:
    """Poisson arrivals at `rate` steps/s over the streams, submitted by one thread when due;
    latency from each step's arrival time to when the driver sees its result done (polled every
    ~0.1 ms, results read in arrival order: an upper bound)."""
    pool = model.stream_pool(count)
    ids = [pool.open() for _ in range(count)]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((count, model.input_size), dtype=np.float32)
    total = max(1, int(rate * seconds))
    arrivals = np.cumsum(rng.exponential(1.0 / rate, total))
    streams = rng.integers(0, count, total)
    pending: Deque[Tuple[float, Any]] = collections.deque()
    latencies = []
    with fastlstm.StepBatcher(pool, max_batch=count, max_delay_us=max_delay_us) as batcher:
        start = time.perf_counter()
        next_arrival = 0
        while next_arrival < total or pending:
            now = time.perf_counter() - start
            while next_arrival < total and arrivals[next_arrival] <= now:
                stream = streams[next_arrival]
                pending.append((arrivals[next_arrival], batcher.submit(ids[stream], x[stream])))
                next_arrival += 1
            while pending and pending[0][1].done():
                latencies.append(time.perf_counter() - start - pending.popleft()[0])
            time.sleep(0.0001)
        elapsed = time.perf_counter() - start
    values = np.array(latencies) * 1e6
    return {"offered_per_s": rate, "achieved_per_s": total / elapsed, "p50_us": float(np.percentile(values, 50)),
            "p99_us": float(np.percentile(values, 99))}


def _tick_percentiles(tool: Callable[[], int], per_tick: float) -> Tuple[float, float]:
    """p50 and p99 of single ticks (a step due at a tick's start is done by its end: its latency
    is at most two ticks), over ~1 s of ticks (20 to 200)."""
    durations = []
    for _ in range(int(np.clip(1.0 / max(per_tick, 1e-9), 20, 200))):
        start = time.perf_counter()
        tool()
        durations.append(time.perf_counter() - start)
    return float(np.percentile(durations, 50)), float(np.percentile(durations, 99))


class BusyProcesses:
    """`count` processes spinning on a core each while the benchmark runs (a loaded machine)."""

    def __init__(self, count: int) -> None:
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", action="store_true",
                        help="the stream-serving benchmark instead of the cases: 1,000 streams of an I = H = 128 "
                             "and 256 model through StreamPool, StepBatcher, per-stream steps and the peers")
    parser.add_argument("--stream-count", type=int, default=STREAMS, metavar="N",
                        help=f"with --streams: open streams (default {STREAMS})")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="with --streams: N other processes spinning meanwhile (a loaded machine)")


def run(args: argparse.Namespace) -> int:
    torch = None if args.no_torch else import_torch()
    ort = None if args.no_ort or torch is None else import_ort()
    threads_list = args.threads or [fastlstm.build_info()["default_threads"]]
    machine = machine_info()
    if args.stream_count < 1 or args.repeats < 1:
        print("error: --stream-count and --repeats must be >= 1", file=sys.stderr)
        return 2
    print(f"fastlstm {fastlstm.__version__}  CPU: {machine['cpu_model']}, {machine['usable_cores']} usable cores; "
          f"default threads {machine['default_threads']} ({machine['threads_source']}); {args.stream_count} streams; {args.busy} busy processes beside")
    busy = BusyProcesses(args.busy) if args.busy else None
    rows: List[dict] = []
    try:
        for size in SIZES:
            for threads in threads_list:
                rows.extend(_run_size(size, threads, args, torch, ort))
    finally:
        if busy:
            busy.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "streams", "command": sys.argv, "machine": machine, "streams": args.stream_count,
                       "versions": versions(torch, ort), "busy_processes": args.busy, "rows": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


def _run_size(size: int, threads: int, args: argparse.Namespace, torch, ort) -> List[dict]:
    rng = np.random.default_rng(size)
    count = args.stream_count
    model = _random_model(size, threads, seed=size)
    tools = _pool_tools(model, count, rng)
    peers, skipped = _peer_tools(model, count, threads, torch, ort, rng)
    tools.update(peers)
    steps: Dict[str, List[int]] = {name: [] for name in tools}

    def counted(name: str, tool: Callable[[], int]) -> Callable[[], None]:
        def call() -> None:
            steps[name].append(tool())
        return call

    load = ForeignLoad()
    timed = interleaved({name: counted(name, tool) for name, tool in tools.items()}, args.repeats,
                        min_time=args.min_time)
    ticks = {name: _tick_percentiles(tool, timed[name]["median_s"]) for name, tool in tools.items()}
    other = load.cores()
    print(f"\nI = H = {size}, {threads} thread(s), {count} open streams"
          + (f"; other load {other:.2f} cores" if other is not None else ""))
    print(f"{'tool':<18} {'per tick ms':>12} {'steps/tick':>10} {'steps/s':>12} {'tick p50 ms':>12} {'tick p99 ms':>12}")
    rows = []
    rate = {}
    for name, result in timed.items():
        per_tick = result["median_s"]
        mean_steps = float(np.mean(steps[name]))
        rate[name] = mean_steps / per_tick
        p50, p99 = ticks[name]
        rows.append({"size": size, "threads": threads, "tool": name, "per_tick_s": per_tick,
                     "steps_per_tick": mean_steps, "steps_per_s": rate[name], "samples_s": result["samples_s"],
                     "tick_p50_s": p50, "tick_p99_s": p99, "other_cores": other})
        print(f"{name:<18} {per_tick * 1e3:>12.3f} {mean_steps:>10.0f} {rate[name]:>12,.0f} {p50 * 1e3:>12.3f} "
              f"{p99 * 1e3:>12.3f}")
    for peer, reason in skipped.items():
        print(f"{peer + ' per-stream':<18} skipped: {reason}")

    pool_tick = timed["pool poisson"]["median_s"]
    max_delay_us = 1000.0
    throughput = _batcher_throughput(model, count, seconds=max(0.2, 10 * args.min_time), max_delay_us=max_delay_us)
    # Half the pool's rate, at most what one Python thread submits comfortably (~2 us a step).
    offered = min(0.5 * rate["pool poisson"], LATENCY_RATE_CAP)
    latency = _batcher_latency(model, count, rate=offered, seconds=max(0.2, 10 * args.min_time),
                               max_delay_us=max_delay_us)
    rows.append({"size": size, "threads": threads, "tool": "batcher", "max_delay_us": max_delay_us, **throughput,
                 **latency})
    print(f"{'batcher':<18} {'':>12} {throughput['mean_batch']:>10.0f} {throughput['steps_per_s']:>12,.0f}   "
          f"at {latency['offered_per_s']:,.0f} steps/s offered: p50 {latency['p50_us']:.0f} us, "
          f"p99 {latency['p99_us']:.0f} us (max_delay {max_delay_us:.0f} us)")

    goals = [
        ("pool all / stream(N) batch, time per tick (<= 1.15)",
         timed["pool all"]["median_s"] / timed["stream(N) batch"]["median_s"], 1.15, "<="),
        ("pool poisson / per-stream, steps/s (>= 3.5 at 128)", rate["pool poisson"] / rate["per-stream"], 3.5, ">="),
        ("pool churn / pool poisson, time per step (< 1.05)", rate["pool poisson"] / rate["pool churn"], 1.05, "<"),
        ("batcher / pool poisson, steps/s (>= 0.8)", throughput["steps_per_s"] / rate["pool poisson"], 0.8, ">="),
        ("batcher p99 / (max_delay + 2 pool ticks) (<= 1)",
         latency["p99_us"] / (max_delay_us + 2e6 * pool_tick), 1.0, "<="),
    ]
    if "ort per-stream" in rate:
        goals.insert(2, ("pool poisson / ORT per-stream, steps/s (>= 10)",
                         rate["pool poisson"] / rate["ort per-stream"], 10.0, ">="))
    for text, value, bound, how in goals:
        met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[how]
        print(f"  {text}: {value:.2f} {'met' if met else 'NOT met'}")
        rows.append({"size": size, "threads": threads, "goal": text, "value": value, "met": bool(met)})
    return rows
