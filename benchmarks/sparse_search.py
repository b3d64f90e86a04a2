"""Sparse (SPLADE-style) exact search machinery on 1M synthetic documents, beside bm25s's BM25 on the same
collection (the reference), in one run: the measurement behind ``gpte.search.sparse``'s choice.

Collection: ``--docs`` documents of token ids drawn from a Zipf law (exponent ``--zipf``) over a ``--vocab``
vocabulary (ranks shuffled into ids), ``--draws`` draws each (about 100 distinct ids at the defaults); a document's
sparse vector weighs each distinct id log(1 + count) x U(0.5, 1.5), as a learned sparse model's positive weights.
The same draws are the document's text for BM25 (token ids with their repeats, so BM25 sees term frequencies).
Queries: ``--queries`` queries of the distinct ids of ``--query-draws`` draws (about 20), weights U(0.2, 2); BM25 gets
the same ids as tokens.

Methods, each timed one query at a time (p50 and mean latency, top ``--k``), with its index size:

- ``bm25s (reference)``: gpte's lexical path, ``BM25.get_scores`` (bm25s's posting-list scatter, NumPy) + top-k;
  size: the folder ``BM25.save`` writes.
- ``scipy postings[q].T @ w``: a term-major CSR (vocab x docs, the inverted index): the query terms' posting lists
  selected, then scipy's compiled CSC mat-vec scatters them into one score per document; size: gpte's on-disk folder
  (``gpte.search.sparse.save_postings``). gpte's choice.
- ``gpte SparseSearcher``: the same through gpte's class, end to end (query checks, filter-ready masking, best chunk
  per document, ties by position).
- ``scipy docs @ q``: a document-major CSR (docs x vocab) times the dense query: every stored weight read per query.
- ``scipy q @ postings``: sparse x sparse product of the query row and the term-major CSR (scipy's SMMP).
- ``numpy scatter``: per query term, ``scores[docs] += w * weights`` (no library, as bm25s does for BM25).
- ``torch.sparse.mm``: torch's CSR (docs x vocab) times the dense query column.
- ``sparse_dot_topn``: its top-n sparse product of the query row and the term-major CSR (if installed).
- ``seismic exact``: pyseismic-lsr's in-memory dataset, brute-force ``search`` (if installed).
- ``seismic index``: its approximate index (``--seismic-index``: minutes to build at 1M); recall@k given.

Every exact method's top-k is checked against the first exact one's (same documents). Figures are printed as
ratios to BM25 measured in the same run, then in absolute numbers; the CPU model and its vector flags come first.

    python benchmarks/sparse_search.py [--docs 1000000] [--queries 100] [--threads 1] [--seismic-index]

Optional libraries (not gpte dependencies): ``pip install sparse_dot_topn pyseismic-lsr``. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse
from interleaved_timing import cpu_description

from gpte.search.sparse import SparseSearcher, save_postings


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class Collection:
    """Documents (sparse vectors and token lists) and queries, generated from a seed."""

    def __init__(self, docs: int, vocab: int, draws: int, queries: int, query_draws: int, zipf: float, seed: int):
        rng = np.random.default_rng(seed)
        cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** zipf)
        cdf /= cdf[-1]
        shuffle = rng.permutation(vocab)  # rank -> token id

        def sample(shape):
            return shuffle[np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), vocab - 1)]

        blocks, self.tokens = [], []
        for start in range(0, docs, 100_000):
            rows = min(100_000, docs - start)
            ids = np.sort(sample((rows, draws)), axis=1)
            first = np.ones_like(ids, dtype=bool)
            first[:, 1:] = ids[:, 1:] != ids[:, :-1]
            at = np.flatnonzero(first.ravel())
            counts = np.diff(np.append(at, ids.size))
            weights = (np.log1p(counts) * rng.uniform(0.5, 1.5, len(at))).astype(np.float32)
            indptr = np.concatenate([[0], np.cumsum(first.sum(axis=1))])
            blocks.append(scipy.sparse.csr_matrix((weights, ids.ravel()[at], indptr), shape=(rows, vocab)))
            self.tokens.extend(ids.tolist())  # the draws with their repeats: the BM25 text
        self.docs = scipy.sparse.vstack(blocks, format="csr")
        self.docs.sort_indices()
        self.queries = []
        for _ in range(queries):
            ids = np.unique(sample(query_draws))
            self.queries.append((ids.astype(np.int32), rng.uniform(0.2, 2.0, len(ids)).astype(np.float32)))
        self.query_rows = scipy.sparse.csr_matrix(
            (
                np.concatenate([w for _, w in self.queries]),
                np.concatenate([i for i, _ in self.queries]),
                np.concatenate([[0], np.cumsum([len(i) for i, _ in self.queries])]),
            ),
            shape=(queries, vocab),
        )


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k)[:k]
    return part[np.lexsort((part, -scores[part]))]


def time_queries(search: Callable[[int], np.ndarray], count: int) -> tuple[list[np.ndarray], np.ndarray]:
    search(0)  # warm up
    results, seconds = [], []
    for q in range(count):
        started = time.perf_counter()
        results.append(np.asarray(search(q)))
        seconds.append(time.perf_counter() - started)
    return results, np.array(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--draws", type=int, default=133, help="token draws per document (~100 distinct ids)")
    parser.add_argument("--query-draws", type=int, default=23, help="token draws per query (~20 distinct ids)")
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="threads of torch, sparse_dot_topn and seismic")
    parser.add_argument("--seismic-index", action="store_true", help="also build Seismic's approximate index")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(cpu_description())
    started = time.perf_counter()
    data = Collection(args.docs, args.vocab, args.draws, args.queries, args.query_draws, args.zipf, args.seed)
    n, k = args.docs, args.k
    started = time.perf_counter()
    postings = data.docs.T.tocsr()  # the inverted index: what gpte builds from the chunk vectors
    transpose = time.perf_counter() - started
    touched = np.mean([np.diff(postings.indptr)[ids].sum() for ids, _ in data.queries])
    print(
        f"{n:,} documents, {data.docs.nnz / n:.1f} distinct ids each (Zipf {args.zipf}, vocabulary {args.vocab:,}), "
        f"{args.queries} queries of {np.mean([len(i) for i, _ in data.queries]):.1f} ids, {touched:,.0f} postings "
        f"read per query; top {k}, one query at a time, {args.threads} thread(s); made in "
        f"{time.perf_counter() - started:.0f} s"
    )
    rows: list[dict] = []
    reference: list[np.ndarray] | None = None
    scratch = Path(tempfile.mkdtemp(prefix="sparse-bench-"))

    def record(name, search, size, build, exact=True, note=""):
        nonlocal reference
        results, seconds = time_queries(search, args.queries)
        if exact and reference is not None:
            same = sum(set(a.tolist()) == set(b.tolist()) for a, b in zip(results, reference))
            note = note or f"top-{k} = reference in {same}/{args.queries}"
        elif not exact and reference is not None:
            recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(results, reference)])
            note = f"approximate: recall@{k} {recall:.3f}"
        if exact and reference is None and name != "bm25s (reference)":
            reference = results
        rows.append(
            {
                "name": name,
                "p50": np.median(seconds),
                "mean": seconds.mean(),
                "size": size,
                "build": build,
                "note": note,
            }
        )
        print(f"  measured {name}: p50 {np.median(seconds) * 1e3:.2f} ms", flush=True)

    # ---- BM25 reference (gpte's lexical path: get_scores + top-k)
    import bm25s

    started = time.perf_counter()
    bm25 = bm25s.BM25()
    bm25.index(
        bm25s.tokenization.Tokenized(ids=data.tokens, vocab={str(i): i for i in range(args.vocab)}), show_progress=False
    )
    bm25_build = time.perf_counter() - started
    data.tokens = []
    gc.collect()
    bm25.save(str(scratch / "bm25"))
    record(
        "bm25s (reference)",
        lambda q: top_k(bm25.get_scores(data.queries[q][0].tolist()), k),
        folder_bytes(scratch / "bm25"),
        bm25_build,
        note="BM25 over the same token ids",
    )
    bm25 = None  # free it before the next method
    gc.collect()

    # ---- scipy, term-major postings (gpte's choice)
    save_postings(postings, scratch / "postings")
    postings_bytes = folder_bytes(scratch / "postings")
    record(
        "scipy postings[q].T @ w",
        lambda q: top_k(np.asarray(postings[data.queries[q][0]].T @ data.queries[q][1]), k),
        postings_bytes,
        transpose,
    )
    started = time.perf_counter()
    searcher = SparseSearcher.load(scratch / "postings")
    load = time.perf_counter() - started
    record(
        "gpte SparseSearcher",
        lambda q: searcher.search(data.query_rows[q], k)[0].docs,
        postings_bytes,
        transpose + load,  # built as above, then opened from gpte's folder (memory maps)
    )
    record(
        "scipy docs @ q",
        lambda q: top_k(data.docs @ data.query_rows[q].toarray().ravel(), k),
        data.docs.data.nbytes + data.docs.indices.nbytes + data.docs.indptr.nbytes,
        0.0,
    )
    record(
        "scipy q @ postings",
        lambda q: top_k((data.query_rows[q] @ postings).toarray().ravel(), k),
        postings_bytes,
        transpose,
    )

    def scatter(q):
        ids, weights = data.queries[q]
        scores = np.zeros(n, np.float32)
        for term, weight in zip(ids.tolist(), weights.tolist()):
            start, end = postings.indptr[term], postings.indptr[term + 1]
            scores[postings.indices[start:end]] += np.float32(weight) * postings.data[start:end]
        return top_k(scores, k)

    record("numpy scatter", scatter, postings_bytes, transpose)

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
    started = time.perf_counter()
    docs_torch = torch.sparse_csr_tensor(
        torch.from_numpy(data.docs.indptr.astype(np.int64)),
        torch.from_numpy(data.docs.indices.astype(np.int64)),
        torch.from_numpy(data.docs.data),
        size=data.docs.shape,
    )
    torch_build = time.perf_counter() - started
    record(
        "torch.sparse.mm",
        lambda q: top_k(
            torch.sparse.mm(docs_torch, torch.from_numpy(data.query_rows[q].toarray().reshape(-1, 1))).numpy().ravel(),
            k,
        ),
        sum(
            t.numel() * t.element_size()
            for t in (docs_torch.crow_indices(), docs_torch.col_indices(), docs_torch.values())
        ),
        torch_build,
    )
    docs_torch = None
    gc.collect()

    try:
        import sparse_dot_topn
    except ImportError:
        print("  sparse_dot_topn not installed (pip install sparse_dot_topn): skipped")
    else:
        threads = None if args.threads <= 1 else args.threads
        record(
            "sparse_dot_topn",
            lambda q: (
                sparse_dot_topn.sp_matmul_topn(
                    data.query_rows[q], postings, top_n=k, sort=True, n_threads=threads
                ).indices
            ),
            postings_bytes,
            transpose,
        )
    try:
        import seismic
    except ImportError:
        print("  seismic not installed (pip install pyseismic-lsr): skipped")
    else:
        kind = seismic.get_seismic_string()
        started = time.perf_counter()
        dataset = seismic.SeismicDataset()
        dataset.add_documents_by_id(
            [str(i) for i in range(n)],
            data.docs.indices.astype(np.int64),
            data.docs.data,
            data.docs.indptr.astype(np.int64),
        )
        dataset_build = time.perf_counter() - started
        components = [np.array([str(t) for t in ids], dtype=kind) for ids, _ in data.queries]

        def seismic_exact(q):
            return [int(hit[2]) for hit in dataset.search("q", components[q], data.queries[q][1], k=k)]

        record("seismic exact", seismic_exact, data.docs.nnz * 8 + (n + 1) * 8, dataset_build)  # its ids + weights
        if args.seismic_index:
            started = time.perf_counter()
            index = seismic.SeismicIndex.build_from_dataset(dataset, num_threads=args.threads)
            index_build = time.perf_counter() - started
            index.save(str(scratch / "seismic"))
            size = sum(p.stat().st_size for p in scratch.glob("seismic*"))

            def seismic_index(q):
                hits = index.search("q", components[q], data.queries[q][1], k=k, query_cut=20, heap_factor=0.7)
                return [int(hit[2]) for hit in hits]

            record("seismic index", seismic_index, size, index_build, exact=False)
    report(rows)


def report(rows: list[dict]) -> None:
    base = rows[0]
    print(f"\n{'method':26s} {'p50 vs BM25':>12s} {'mean vs BM25':>13s} {'size vs BM25':>13s}   absolute")
    for row in rows:
        print(
            f"{row['name']:26s} {row['p50'] / base['p50']:11.2f}x {row['mean'] / base['mean']:12.2f}x "
            f"{row['size'] / base['size']:12.2f}x   p50 {row['p50'] * 1e3:8.2f} ms, mean {row['mean'] * 1e3:8.2f} ms, "
            f"{row['size'] / 2**20:8.1f} MiB, build {row['build']:6.1f} s"
            + (f"  ({row['note']})" if row["note"] else "")
        )


if __name__ == "__main__":
    main()
