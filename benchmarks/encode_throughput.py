"""Encode throughput: gpte against sentence-transformers on the same model, data, batch size and threads.

Encodes the distinct STS Benchmark en test sentences (../shared/data) with both libraries in one run,
alternating the two for ``--repeats`` rounds after a warm-up, and prints sentences/s (median and best),
their ratio, and the largest absolute difference between the two libraries' vectors.

    python benchmarks/encode_throughput.py [--device cpu|cuda] [--batch-size 32] [--threads N] [--repeats 5]
                                           [--model FOLDER] [--data STS_JSONL]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gpte import Embedder
from gpte.models.sources import resolve_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sts" / "stsb-en" / "test.jsonl"


def stsb_sentences(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))


def timed(encode, sentences: list[str]) -> tuple[float, np.ndarray]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    vectors = encode(sentences)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(sentences) / (time.perf_counter() - start), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer, __version__ as st_version

    sentences = stsb_sentences(args.data)
    folder = str(args.model or resolve_model(None).folder)
    gpte_model = Embedder.load(folder, device=args.device)
    st_model = SentenceTransformer(folder, device=args.device)
    runners = {
        "gpte": lambda texts: gpte_model.encode(texts, batch_size=args.batch_size, show_progress=False),
        f"sentence-transformers {st_version}": lambda texts: st_model.encode(texts, batch_size=args.batch_size),
    }
    for encode in runners.values():  # warm-up
        encode(sentences[:256])
    rates: dict[str, list[float]] = {name: [] for name in runners}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, encode in runners.items():
            rate, vectors[name] = timed(encode, sentences)
            rates[name].append(rate)

    print(f"{folder}, {len(sentences)} distinct STS Benchmark test sentences, device={args.device}, "
          f"batch_size={args.batch_size}, threads={args.threads}, repeats={args.repeats}")
    for name, values in rates.items():
        print(f"  {name:<30} median {statistics.median(values):8.1f} sentences/s   best {max(values):8.1f}")
    gpte_name, st_name = runners
    ratio = statistics.median(rates[gpte_name]) / statistics.median(rates[st_name])
    print(f"  ratio gpte / sentence-transformers (median): {ratio:.2f}x")
    print(f"  max |gpte - sentence-transformers| over all vectors: {np.abs(vectors[gpte_name] - vectors[st_name]).max():.2e}")


if __name__ == "__main__":
    main()
