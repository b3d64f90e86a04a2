"""Search at scale: gpte's dense search modes on 1M vectors beside a FAISS flat index (the reference), in one run.

Vectors: all-MiniLM-L6-v2 output for the distinct English sentences of ../shared/data (STS-B, SICK,
Banking77, TREC QA, Tatoeba's English side); the collection is ``--vectors`` mixtures of two real vectors
(``normalize(a·x_i + (1−a)·x_j)``, a ~ U(0.5, 1)), so that 1M vectors lie where the model's outputs lie
without embedding 1M texts on a CPU. Queries: real vectors of ``--queries`` sentences held out of the base.

For each method: build time, queries/s (all queries in one batch, k = 10), recall@10 against FAISS flat's
top 10, vector/index memory and the size on disk. Methods: FAISS ``IndexFlatIP`` (reference), gpte exact
(``DenseSearcher`` exact: the model's similarity in 50k-row blocks, as ``gpte.evaluate``), gpte HNSW
(FAISS HNSW, M 32, efConstruction 200) at several ``ef_search``, gpte binary and int8 + float rescoring; with
``--usearch``, usearch's HNSW (M 32, expansion 200) for the library choice.

    python benchmarks/search.py [--vectors 1000000] [--queries 1000] [--ef 64 128 256] [--threads 2] [--usearch]
                                [--cache sentences.npy] [--json rows.json]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from gpte import Embedder
from gpte.search import dense
from gpte.search.ranking import DocumentLayout

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
K = 10


def english_sentences() -> list[str]:
    """Distinct English sentences of the shared data, in a fixed order."""
    texts: list[str] = []
    for pattern in ("sts/stsb-en/*.jsonl", "sts/sick-r/*.jsonl"):
        for path in sorted(SHARED.glob(pattern)):
            for row in map(json.loads, path.open(encoding="utf-8")):
                texts += [row["sentence1"], row["sentence2"]]
    for path in sorted(SHARED.glob("classification/banking77/*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    for path in sorted(SHARED.glob("reranking/trecqa/*.jsonl")):
        for row in map(json.loads, path.open(encoding="utf-8")):
            texts += [row["query"], *row["positive"], *row["negative"]]
    for path in sorted(SHARED.glob("bitext_mining/tatoeba-*-eng/*.jsonl")):
        texts += [json.loads(line)["sentence2"] for line in path.open(encoding="utf-8")]
    return list(dict.fromkeys(text.strip() for text in texts if text.strip()))


def mixtures(base: np.ndarray, count: int, seed: int = 0, block: int = 100_000) -> np.ndarray:
    """``count`` unit vectors normalize(a·x_i + (1−a)·x_j) of random base rows, a ~ U(0.5, 1)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, base.shape[1]), np.float32)
    for start in range(0, count, block):
        n = min(block, count - start)
        first, second = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
        weight = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
        mixed = weight * base[first] + (1 - weight) * base[second]
        out[start : start + n] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return out


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean fraction of the true top 10 found in the first 10."""
    return float(np.mean([len(set(f[:K]) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def file_bytes(write) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index"
        write(path)
        return path.stat().st_size


def row(
    name: str,
    build_s: float,
    seconds: float,
    queries: int,
    found_recall: float,
    memory: int,
    disk: int,
    flat_qps: float,
) -> dict:
    qps = queries / seconds
    print(
        f"{name:<36} {build_s:>9.1f} {qps:>10.1f} {qps / flat_qps:>8.2f}x {found_recall:>10.4f} {memory / 2**20:>10.1f} {disk / 2**20:>9.1f}",
        flush=True,
    )
    return {
        "method": name,
        "build_s": build_s,
        "qps": qps,
        "qps_vs_flat": qps / flat_qps,
        "recall_at_10": found_recall,
        "memory_mib": memory / 2**20,
        "disk_mib": disk / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--ef", type=int, nargs="*", default=[64, 128, 256], help="HNSW efSearch values (none: skip HNSW)"
    )
    parser.add_argument("--rescore", type=int, nargs="+", default=[10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--usearch", action="store_true", help="also usearch's HNSW (pip install usearch)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--cache", type=Path, default=None, help="an .npy file keeping the sentence vectors between runs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    texts = english_sentences()
    embedder = Embedder.load(device="cpu")
    if args.cache and args.cache.is_file():
        encoded, encode_s = np.load(args.cache), 0.0
    else:
        encoded, encode_s = timed(embedder.encode, texts, batch_size=64, show_progress=True)
        if args.cache:
            np.save(args.cache, encoded)
    queries, base = encoded[: args.queries], encoded[args.queries :]
    vectors = mixtures(base, args.vectors)
    print(
        f"{len(texts):,} sentences encoded in {encode_s:.0f} s; {len(base):,} base vectors -> {len(vectors):,} mixtures; "
        f"{len(queries):,} held-out queries; k = {K}; {args.threads} threads"
    )
    print(
        f"{'method':<36} {'build s':>9} {'queries/s':>10} {'vs flat':>9} {'recall@10':>10} {'mem MiB':>10} {'disk MiB':>9}"
    )
    rows = []

    flat, build_s = timed(lambda: _flat(vectors))
    (_, truth), seconds = timed(flat.search, queries, K)
    flat_qps = len(queries) / seconds
    rows.append(
        row(
            "faiss flat (reference)",
            build_s,
            seconds,
            len(queries),
            1.0,
            vectors.nbytes,
            vectors.nbytes + 128,
            flat_qps,
        )
    )

    layout = DocumentLayout(np.arange(len(vectors), dtype=np.int64), np.ones(len(vectors), dtype=np.int64))
    searcher = dense.DenseSearcher(vectors, layout, "cosine")
    found, seconds = timed(searcher.search, queries, K, "exact")
    rows.append(
        row(
            "gpte exact",
            0.0,
            seconds,
            len(queries),
            recall([r.docs.tolist() for r in found], truth),
            vectors.nbytes,
            vectors.nbytes + 128,
            flat_qps,
        )
    )

    if args.ef:
        rows += _gpte_hnsw(searcher, vectors, queries, truth, args.ef, flat_qps)

    for mode in ("binary", "int8"):
        rows += _quantized(searcher, mode, vectors, queries, truth, args.rescore, flat_qps)

    if args.usearch:
        rows += _usearch(vectors, queries, truth, args.ef, flat_qps, args.threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(
        f"peak RSS of this process: {peak:,.0f} MiB; binary codes use {vectors.nbytes / max(searcher.binary_bytes, 1):.0f}x less memory than float32"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def _gpte_hnsw(
    searcher: dense.DenseSearcher,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    efs: list[int],
    flat_qps: float,
) -> list[dict]:
    hnsw, build_s = timed(dense.build_hnsw, vectors, "cosine")
    searcher.hnsw = hnsw
    hnsw_disk = file_bytes(lambda path: dense.save_hnsw(hnsw, path))
    rows = []
    for ef in efs:
        found, seconds = timed(searcher.search, queries, K, "hnsw", None, ef)
        rows.append(
            row(
                f"gpte hnsw ef={ef}",
                build_s,
                seconds,
                len(queries),
                recall([r.docs.tolist() for r in found], truth),
                hnsw_disk,
                hnsw_disk + vectors.nbytes,
                flat_qps,
            )
        )
        build_s = 0.0
    return rows


def _quantized(
    searcher: dense.DenseSearcher,
    mode: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    rescores: list[int],
    flat_qps: float,
) -> list[dict]:
    """``mode`` ("binary" or "int8") at each rescoring depth; the first call builds the codes, so the first
    depth is timed twice (with and without building)."""
    rows = []
    for number, rescore in enumerate([rescores[0], *rescores]):
        found, seconds = timed(searcher.search, queries, K, mode, None, 128, rescore)
        memory = searcher.binary_bytes if mode == "binary" else searcher.int8_bytes
        name = f"gpte {mode}+rescore x{rescore}" + (" (codes built)" if number == 0 else "")
        rows.append(
            row(
                name,
                0.0,
                seconds,
                len(queries),
                recall([r.docs.tolist() for r in found], truth),
                memory,
                memory + vectors.nbytes,
                flat_qps,
            )
        )
    return rows


def _flat(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def _usearch(
    vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, efs: list[int], flat_qps: float, threads: int
) -> list[dict]:
    from usearch.index import Index as UsearchIndex

    index = UsearchIndex(ndim=vectors.shape[1], metric="cos", dtype="f32", connectivity=32, expansion_add=200)
    _, build_s = timed(index.add, np.arange(len(vectors)), vectors, threads=threads)
    disk = file_bytes(lambda path: index.save(str(path)))
    rows = []
    for ef in efs:
        index.expansion_search = ef
        matches, seconds = timed(index.search, queries, K, threads=threads)
        rows.append(
            row(
                f"usearch hnsw ef={ef}",
                build_s,
                seconds,
                len(queries),
                recall(matches.keys.tolist(), truth),
                disk,
                disk,
                flat_qps,
            )
        )
        build_s = 0.0
    return rows


if __name__ == "__main__":
    main()
