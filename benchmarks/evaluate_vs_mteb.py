"""Whole-suite evaluation: gpte against mteb, same model (all-MiniLM-L6-v2), same data, same machine.

Runs every task folder below ../shared/data (or --data) with gpte's evaluator (gpte's Embedder), then
with mteb's own evaluators (mteb's sentence-transformers wrapper, through gpte.evaluate.mteb_bridge),
and prints per-task main scores side by side, the wall time of each side and their ratio. gpte's cold
run fills an on-disk vector cache (its writing time counted); a second gpte run then reads every vector
from it, which shows what is left when nothing needs encoding (metrics, data reading, model loading).

    python benchmarks/evaluate_vs_mteb.py [--data DIR] [--tasks NAME ...] [--batch-size 32]

Not a test: run it by hand and record the table in the README.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

from gpte import Embedder
from gpte.evaluate import discover_tasks, evaluate, select_tasks
from gpte.evaluate.mteb_bridge import mteb_scores
from gpte.models.sources import resolve_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    tasks = select_tasks(discover_tasks(args.data), args.tasks)

    cache = tempfile.mkdtemp(prefix="gpte-vector-cache-")
    started = time.perf_counter()
    ours = evaluate(Embedder.load(device="cpu"), tasks, batch_size=args.batch_size, cache=cache)
    gpte_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = evaluate(Embedder.load(device="cpu"), tasks, batch_size=args.batch_size, cache=cache)
    warm_seconds = time.perf_counter() - started
    assert all(warm.results[name]["scores"] == result["scores"] for name, result in ours.results.items())

    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformerEncoderWrapper(SentenceTransformer(str(resolve_model(None).folder), device="cpu"))
    theirs = {task.name: mteb_scores(task, model, args.batch_size)["main_score"] for task in tasks}
    mteb_seconds = time.perf_counter() - started

    print(f"{'task':<34} {'main score':<16} {'gpte':>8} {'mteb':>8} {'diff':>7}")
    for task in tasks:
        value = ours.results[task.name]["main_score_value"] if task.name in ours.results else float("nan")
        print(
            f"{task.name:<34} {task.main_score:<16} {100 * value:8.2f} {100 * theirs[task.name]:8.2f} {100 * (value - theirs[task.name]):+7.3f}"
        )
    print(
        f"wall time (model loading included): gpte {gpte_seconds:.1f} s, mteb {mteb_seconds:.1f} s, "
        f"ratio mteb / gpte = {mteb_seconds / gpte_seconds:.2f}x"
    )
    print(
        f"gpte again with every vector in its on-disk cache: {warm_seconds:.1f} s, ratio mteb / gpte = {mteb_seconds / warm_seconds:.2f}x"
    )


if __name__ == "__main__":
    main()
