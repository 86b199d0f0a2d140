"""Score variable-length sequences with a fastlstm model on Spark (local mode).

`mapInPandas` runs the scoring function on each partition in a Python worker process: it loads
the model once per partition from its file (the path travels, not the weights), with the threads
its share of the CPUs allows, and scores each Arrow batch of sequences packed (no work on
padding). The sequences are sorted by length first, so that a batch holds similar lengths. The
result is checked against the same scoring in this process, and the rates are printed (Spark's
includes starting its Python workers):

    python examples/scale_out/spark.py --workers 2 --sequences 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import fastlstm


def make_data(count: int, input_size: int, seed: int = 0) -> list:
    """`count` sequences of 50 to 150 steps, as (id, sequence), sorted by length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 151, size=count)
    rows = [(i, rng.standard_normal((int(n), input_size), dtype=np.float32)) for i, n in enumerate(lengths)]
    return sorted(rows, key=lambda row: len(row[1]))


def score_with(model, ids, sequences) -> list:
    packed = fastlstm.pack_sequence(list(sequences), enforce_sorted=False)
    _, (h_n, _) = model(packed)
    return list(zip(ids, h_n[-1]))  # the last layer's final state


def scorer(model_path: str, input_size: int, num_threads: int):
    """The function mapInPandas runs on each partition: batches of (id, length, flat sequence) in,
    (id, embedding) out."""

    def score_partition(batches):
        import pandas as pd

        model = fastlstm.LSTM.load(model_path, num_threads=num_threads)
        for batch in batches:
            sequences = [np.asarray(flat, dtype=np.float32).reshape(int(n), input_size)
                         for flat, n in zip(batch["sequence"], batch["length"])]
            scored = score_with(model, batch["id"].tolist(), sequences)
            yield pd.DataFrame({"id": [i for i, _ in scored], "embedding": [e.tolist() for _, e in scored]})

    return score_partition


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs Spark may use")
    args = parser.parse_args(argv)

    import pandas as pd
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "model.safetensors")
        fastlstm.LSTM(args.input_size, args.hidden_size, num_layers=2).save(model_path)
        rows = make_data(args.sequences, args.input_size)

        model = fastlstm.LSTM.load(model_path, num_threads=args.cpus)
        start = time.perf_counter()
        expected = {}
        for k in range(0, len(rows), args.batch_size):
            chunk = rows[k:k + args.batch_size]
            expected.update(score_with(model, [i for i, _ in chunk], [s for _, s in chunk]))
        here = len(rows) / (time.perf_counter() - start)

        spark = (SparkSession.builder.master(f"local[{args.workers}]").appName("fastlstm")
                 .config("spark.ui.enabled", "false")
                 .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
                 .getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        try:
            table = pd.DataFrame({"id": [i for i, _ in rows], "length": [len(s) for _, s in rows],
                                  "sequence": [s.ravel() for _, s in rows]})
            # Contiguous ranges of the length-sorted rows: each partition holds similar lengths.
            frame = spark.createDataFrame(table).repartitionByRange(args.workers, "length").cache()
            frame.count()
            threads = max(1, args.cpus // args.workers)
            start = time.perf_counter()
            scored = frame.mapInPandas(scorer(model_path, args.input_size, threads),
                                       schema="id long, embedding array<float>").collect()
            on_spark = len(rows) / (time.perf_counter() - start)
        finally:
            spark.stop()
    got = {int(row["id"]): np.asarray(row["embedding"], dtype=np.float32) for row in scored}

    worst = max(float(np.abs(got[i] - expected[i]).max()) for i in expected)
    print(f"one process ({args.cpus} threads): {here:.0f} sequences/s")
    print(f"Spark, {args.workers} worker(s) x {threads} thread(s): {on_spark:.0f} sequences/s "
          f"({on_spark / here:.2f}x); {len(got)} scored, max |difference| {worst:.2e}")
    if sorted(got) != sorted(expected) or worst > 1e-5:
        print("error: Spark's results differ from this process's")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
