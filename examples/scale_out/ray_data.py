"""Score variable-length sequences with a fastlstm model on Ray Data.

Each of `--workers` actors loads the model once from its file (the path travels, not the weights)
with the threads its share of the CPUs allows, and scores batches of sequences packed (no work on
padding); the sequences are sorted by length first, so that a batch holds similar lengths. The
result is checked against the same scoring in this process, and the rates are printed (Ray's
includes starting the actors and loading the model in each):

    python examples/scale_out/ray_data.py --workers 2 --sequences 2000
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np

import fastlstm


class Scorer:
    """A Ray Data predictor: the model loads once per actor; each call scores one batch."""

    def __init__(self, model_path: str, num_threads: int) -> None:
        self.model = fastlstm.LSTM.load(model_path, num_threads=num_threads)

    def __call__(self, batch: dict) -> dict:
        sequences = [np.asarray(s, dtype=np.float32) for s in batch["sequence"]]
        packed = fastlstm.pack_sequence(sequences, enforce_sorted=False)
        _, (h_n, _) = self.model(packed)
        return {"id": batch["id"], "embedding": h_n[-1]}  # the last layer's final state


def make_data(count: int, input_size: int, seed: int = 0) -> list:
    """`count` sequences of 50 to 150 steps, as rows {"id", "sequence"}, sorted by length (the
    buckets: batches of neighbours have similar lengths)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 151, size=count)
    rows = [{"id": i, "sequence": rng.standard_normal((int(n), input_size), dtype=np.float32)}
            for i, n in enumerate(lengths)]
    return sorted(rows, key=lambda row: len(row["sequence"]))


def score_here(model_path: str, rows: list, batch_size: int, num_threads: int) -> dict:
    """The same scoring in this process: {id: embedding}."""
    scorer = Scorer(model_path, num_threads)
    result = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        out = scorer({"id": np.array([r["id"] for r in chunk]), "sequence": [r["sequence"] for r in chunk]})
        result.update(zip(out["id"].tolist(), out["embedding"]))
    return result


def score_on_ray(model_path: str, rows: list, workers: int, batch_size: int, threads_per_worker: int) -> dict:
    import ray

    dataset = ray.data.from_items(rows)
    scored = dataset.map_batches(
        Scorer,
        fn_constructor_kwargs={"model_path": model_path, "num_threads": threads_per_worker},
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker,
        batch_size=batch_size,
        batch_format="numpy",
    )
    return {int(row["id"]): row["embedding"] for row in scored.iter_rows()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs Ray may use")
    args = parser.parse_args(argv)

    import ray

    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "model.safetensors")
        fastlstm.LSTM(args.input_size, args.hidden_size, num_layers=2).save(model_path)
        rows = make_data(args.sequences, args.input_size)

        start = time.perf_counter()
        expected = score_here(model_path, rows, args.batch_size, args.cpus)
        here = len(rows) / (time.perf_counter() - start)

        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            threads = max(1, args.cpus // args.workers)
            # Each run starts its own actors: the rate includes their start and the model's load.
            start = time.perf_counter()
            got = score_on_ray(model_path, rows, args.workers, args.batch_size, threads)
            on_ray = len(rows) / (time.perf_counter() - start)
        finally:
            ray.shutdown()

    worst = max(float(np.abs(got[i] - expected[i]).max()) for i in expected)
    print(f"one process ({args.cpus} threads): {here:.0f} sequences/s")
    print(f"Ray Data, {args.workers} worker(s) x {threads} thread(s): {on_ray:.0f} sequences/s "
          f"({on_ray / here:.2f}x); {len(got)} scored, max |difference| {worst:.2e}")
    if sorted(got) != sorted(expected) or worst > 1e-5:
        print("error: Ray's results differ from this process's")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
