"""Score variable-length sequences with a fastlstm model on Ray Data.

Each of `--workers` actors loads the model once from its file (the path travels, not the weights)
with the threads its share of the CPUs allows, and scores batches of sequences packed (no work on
padding); the sequences are sorted by length first, so that a batch holds similar lengths. The
result is checked against the same scoring in this process, and the rates are printed (Ray's
includes starting the actors and loading the model in each):

    python examples/scale_out/ray_data.py --workers 2 --sequences 2000
"""

from __future__ import annotations

import logging
import tempfile
import time

import numpy as np

import fastlstm
from recipe import make_model_file, make_sequences, parse_args, report, score_here


class Scorer:
    """A Ray Data predictor: the model loads once per actor; each call scores one batch."""

    def __init__(self, model_path: str, num_threads: int) -> None:
        self.model = fastlstm.LSTM.load(model_path, num_threads=num_threads)

    def __call__(self, batch: dict) -> dict:
        sequences = [np.asarray(s, dtype=np.float32) for s in batch["sequence"]]
        packed = fastlstm.pack_sequence(sequences, enforce_sorted=False)
        _, (h_n, _) = self.model(packed)
        return {"id": batch["id"], "embedding": h_n[-1]}  # the last layer's final state


def score_on_ray(model_path: str, rows: list, workers: int, batch_size: int, threads_per_worker: int) -> dict:
    import ray

    dataset = ray.data.from_items([{"id": i, "sequence": s} for i, s in rows])
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
    args = parse_args(__doc__, argv)
    import ray

    with tempfile.TemporaryDirectory() as folder:
        model_path = make_model_file(folder, args)
        rows = make_sequences(args.sequences, args.input_size)
        scorer = Scorer(model_path, args.cpus)

        def score_batch(chunk):
            out = scorer({"id": np.array([i for i, _ in chunk]), "sequence": [s for _, s in chunk]})
            return zip(out["id"].tolist(), out["embedding"])

        expected, here = score_here(score_batch, rows, args.batch_size)

        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            # Each run starts its own actors: the rate includes their start and the model's load.
            start = time.perf_counter()
            got = score_on_ray(model_path, rows, args.workers, args.batch_size, args.threads)
            there = len(rows) / (time.perf_counter() - start)
        finally:
            ray.shutdown()
    return report("Ray Data", args, here, there, got, expected)


if __name__ == "__main__":
    raise SystemExit(main())
