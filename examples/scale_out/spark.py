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

import tempfile
import time

import numpy as np

import fastlstm
from recipe import make_model_file, make_sequences, parse_args, report, score_here


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
    args = parse_args(__doc__, argv)
    import pandas as pd
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory() as folder:
        model_path = make_model_file(folder, args)
        rows = make_sequences(args.sequences, args.input_size)
        model = fastlstm.LSTM.load(model_path, num_threads=args.cpus)
        expected, here = score_here(lambda chunk: score_with(model, [i for i, _ in chunk], [s for _, s in chunk]),
                                    rows, args.batch_size)

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
            start = time.perf_counter()
            scored = frame.mapInPandas(scorer(model_path, args.input_size, args.threads),
                                       schema="id long, embedding array<float>").collect()
            there = len(rows) / (time.perf_counter() - start)
        finally:
            spark.stop()
    got = {int(row["id"]): np.asarray(row["embedding"], dtype=np.float32) for row in scored}
    return report("Spark", args, here, there, got, expected)


if __name__ == "__main__":
    raise SystemExit(main())
