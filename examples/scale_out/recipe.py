"""What the scale-out recipes share on the driver's side: their arguments, the data (variable-length
sequences sorted by length) and the check of an engine's results against one process's. The
scoring itself stays in each recipe, where the engine ships it to its workers."""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def parse_args(doc: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs the engine may use")
    args = parser.parse_args(argv)
    args.threads = max(1, args.cpus // args.workers)  # each worker's share: the engines set no CPU masks
    return args


def make_sequences(count: int, input_size: int, seed: int = 0) -> List[Tuple[int, np.ndarray]]:
    """`count` (id, sequence) of 50 to 150 steps, sorted by length: the buckets, so that a batch of
    neighbours holds similar lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 151, size=count)
    rows = [(i, rng.standard_normal((int(n), input_size), dtype=np.float32)) for i, n in enumerate(lengths)]
    return sorted(rows, key=lambda row: len(row[1]))


def make_model_file(folder: str, args: argparse.Namespace) -> str:
    """A 2-layer model of the arguments' sizes, saved where the workers load it: its path."""
    import fastlstm

    path = os.path.join(folder, "model.safetensors")
    fastlstm.LSTM(args.input_size, args.hidden_size, num_layers=2).save(path)
    return path


Scored = List[Tuple[int, np.ndarray]]


def score_here(score_batch: Callable[[List[Tuple[int, np.ndarray]]], Scored], rows: list,
               batch_size: int) -> Tuple[Dict[int, np.ndarray], float]:
    """The rows scored in this process, `batch_size` at a time: {id: embedding} and sequences/s."""
    start = time.perf_counter()
    scored: Dict[int, np.ndarray] = {}
    for k in range(0, len(rows), batch_size):
        scored.update(score_batch(rows[k:k + batch_size]))
    return scored, len(rows) / (time.perf_counter() - start)


def report(engine: str, args: argparse.Namespace, here: float, there: float,
           got: Dict[int, np.ndarray], expected: Dict[int, np.ndarray]) -> int:
    """Prints both rates and checks that the engine scored every sequence as this process did;
    the exit status."""
    worst = max(float(np.abs(got[i] - expected[i]).max()) for i in expected if i in got) if got else float("inf")
    print(f"one process ({args.cpus} threads): {here:.0f} sequences/s")
    print(f"{engine}, {args.workers} worker(s) x {args.threads} thread(s): {there:.0f} sequences/s "
          f"({there / here:.2f}x); {len(got)} scored, max |difference| {worst:.2e}")
    if sorted(got) != sorted(expected) or worst > 1e-5:
        print(f"error: {engine}'s results differ from this process's")
        return 1
    return 0
