"""Score variable-length sequences with a fastlstm model on a Dask cluster.

A worker plugin loads the model once per worker process from its file (the path travels, not the
weights), with the threads its share of the CPUs allows; `map_partitions` scores each partition's
sequences packed (no work on padding). The sequences are sorted by length first, so that a
partition holds similar lengths. The result is checked against the same scoring in this process,
and the rates are printed:

    python examples/scale_out/dask_distributed.py --workers 2 --sequences 2000
"""

from __future__ import annotations

import tempfile
import time

import fastlstm
from recipe import make_model_file, make_sequences, parse_args, report, score_here

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

    return score_with(get_worker().plugins[PLUGIN].model, rows)


def score_with(model, rows: list) -> list:
    packed = fastlstm.pack_sequence([sequence for _, sequence in rows], enforce_sorted=False)
    _, (h_n, _) = model(packed)
    return list(zip([i for i, _ in rows], h_n[-1]))  # the last layer's final state


def score_on_dask(rows: list, batch_size: int) -> dict:
    import dask.bag

    bag = dask.bag.from_sequence(rows, partition_size=batch_size)
    return {int(i): embedding for i, embedding in bag.map_partitions(score_partition).compute()}


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as folder:
        model_path = make_model_file(folder, args)
        rows = make_sequences(args.sequences, args.input_size)
        model = fastlstm.LSTM.load(model_path, num_threads=args.cpus)
        expected, here = score_here(lambda chunk: score_with(model, chunk), rows, args.batch_size)

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.register_plugin(load_model_plugin(model_path, args.threads))
            score_on_dask(rows[: 2 * args.batch_size], args.batch_size)  # warm-up: the workers stay
            start = time.perf_counter()
            got = score_on_dask(rows, args.batch_size)
            there = len(rows) / (time.perf_counter() - start)
    return report("Dask", args, here, there, got, expected)


if __name__ == "__main__":
    raise SystemExit(main())
