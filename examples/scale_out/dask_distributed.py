"""Score variable-length sequences with a fastlstm model on a Dask cluster.

A worker plugin loads the model once per worker process from its file (the path travels, not the
weights), with the threads its share of the CPUs allows; `map_partitions` scores each partition's
sequences packed (no work on padding). The sequences are sorted by length first, so that a
partition holds similar lengths. The result is checked against the same scoring in this process,
and the rates are printed:

    python examples/scale_out/dask_distributed.py --workers 2 --sequences 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import fastlstm

PLUGIN = "fastlstm-model"


def load_model_plugin(model_path: str, num_threads: int):
    """A WorkerPlugin that loads the model when a worker starts (and in workers that join later)."""
    from distributed import WorkerPlugin

    class LoadModel(WorkerPlugin):
        name = PLUGIN

        def setup(self, worker) -> None:
            self.model = fastlstm.LSTM.load(model_path, num_threads=num_threads)

    return LoadModel()


def score_partition(rows: list) -> list:
    """[(id, embedding)] of one partition's sequences, with the model of the worker it runs on."""
    from distributed import get_worker

    model = get_worker().plugins[PLUGIN].model
    return score_with(model, rows)


def score_with(model, rows: list) -> list:
    packed = fastlstm.pack_sequence([row["sequence"] for row in rows], enforce_sorted=False)
    _, (h_n, _) = model(packed)
    return list(zip([row["id"] for row in rows], h_n[-1]))  # the last layer's final state


def make_data(count: int, input_size: int, seed: int = 0) -> list:
    """`count` sequences of 50 to 150 steps, as rows {"id", "sequence"}, sorted by length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 151, size=count)
    rows = [{"id": i, "sequence": rng.standard_normal((int(n), input_size), dtype=np.float32)}
            for i, n in enumerate(lengths)]
    return sorted(rows, key=lambda row: len(row["sequence"]))


def score_on_dask(client, rows: list, batch_size: int) -> dict:
    import dask.bag

    bag = dask.bag.from_sequence(rows, partition_size=batch_size)
    return {int(i): embedding for i, embedding in bag.map_partitions(score_partition).compute()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs the cluster may use")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "model.safetensors")
        fastlstm.LSTM(args.input_size, args.hidden_size, num_layers=2).save(model_path)
        rows = make_data(args.sequences, args.input_size)

        model = fastlstm.LSTM.load(model_path, num_threads=args.cpus)
        start = time.perf_counter()
        expected = {}
        for k in range(0, len(rows), args.batch_size):
            expected.update(score_with(model, rows[k:k + args.batch_size]))
        here = len(rows) / (time.perf_counter() - start)

        threads = max(1, args.cpus // args.workers)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.register_plugin(load_model_plugin(model_path, threads))
            score_on_dask(client, rows[: 2 * args.batch_size], args.batch_size)  # warm-up
            start = time.perf_counter()
            got = score_on_dask(client, rows, args.batch_size)
            on_dask = len(rows) / (time.perf_counter() - start)

    worst = max(float(np.abs(got[i] - expected[i]).max()) for i in expected)
    print(f"one process ({args.cpus} threads): {here:.0f} sequences/s")
    print(f"Dask, {args.workers} worker(s) x {threads} thread(s): {on_dask:.0f} sequences/s "
          f"({on_dask / here:.2f}x); {len(got)} scored, max |difference| {worst:.2e}")
    if sorted(got) != sorted(expected) or worst > 1e-5:
        print("error: Dask's results differ from this process's")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
