"""Multi-vector (ColBERT-style) search on synthetic token vectors: ``gpte.search.multivector.MultiVectorSearcher``
against exact brute-force MaxSim over every document, in one run; ``--alternatives`` adds the measurements behind
its design (token codecs, FDE indexes and settings, PLAID-style IVF candidates).

Collection (fixed seed): ``--documents`` documents of Poisson(30) tokens (4 to 80), 128-d unit vectors, clustered
as token embeddings are: each token is one of 32768 token types (its type vector) drawn 60% from its document's
topic's 64 types, 40% from a Zipf law over all types, plus 0.3 x its document's topic vector (2000 topics) plus
Gaussian noise (norm ~0.35), normalised. Queries: ``--queries`` queries of 32 tokens made near a target document:
12 of its tokens with twice the noise, the rest drawn as new tokens of its topic or the Zipf law; the target is the
one relevant document (nDCG@10 against it). Recall@10 is against the exact MaxSim top 10.

Measured:

- exact brute force (the peer): each query against all tokens (torch matmul by blocks of documents, max per
  document by ``np.maximum.reduceat``), timed per query; it gives the exact top 10 (checked against
  ``gpte.models.multivector.maxsim.maxsim_matrix`` on those documents);
- the searcher: build time, index memory per 1M tokens by part against float32, p50/p95 latency of one query at a
  time for ``rescore="vectors"`` (exact MaxSim of the candidates, floats memory-mapped) and ``rescore="codes"``
  (decoded PQ codes), their ratio to the exact peer, recall@10 and nDCG@10; then a save/load round trip.

``--alternatives`` (several more minutes at 100k documents): token codecs (FAISS PQ16/PQ32/PQ64, SQ8 = int8, SQ4,
sign bits, PLAID-style IVF-1024 centroid + 2-bit residual buckets) rescoring the same candidates from codes; FDE indexes
(Flat, SQ8, PQ fast scan at two sizes) and candidate counts; a larger FDE; and PLAID-style candidate generation
(two-level k-means over the tokens, each query token probes its nearest centroid's list of documents, centroid
interaction, exact rescoring).

    python benchmarks/multivector_search.py [--documents 100000] [--queries 30] [--alternatives]

Not a test: run it by hand. The CPU and its vector flags are printed first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import torch
from sparse_search import cpu_description

from gpte.models.multivector.maxsim import maxsim_matrix
from gpte.models.multivector.vectors import TokenVectors
from gpte.search.multivector import (
    FDEConfig,
    MultiVectorSearcher,
    build_codec,
    build_fde_index,
    encode_tokens,
)

DIM = 128
TOP = 10


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


class Collection:
    """Documents and queries as described in the module docstring, generated from ``seed``."""

    def __init__(self, documents: int, queries: int, seed: int = 0, types: int = 32768, topics: int = 2000) -> None:
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        self.rng, self.gen = rng, gen
        self.centers = unit(torch.randn(types, DIM, generator=gen))
        self.topic_vectors = unit(torch.randn(topics, DIM, generator=gen))
        self.cdf = np.cumsum(1.0 / np.arange(1, types + 1))
        self.rank_to_type = rng.permutation(types)
        self.topic_types = rng.integers(0, types, (topics, 64))
        lengths = np.clip(rng.poisson(30, documents), 4, 80)
        self.doc_topic = rng.integers(0, topics, documents)
        token_topic = np.repeat(self.doc_topic, lengths)
        data = torch.empty(int(lengths.sum()), DIM)
        for start in range(0, len(data), 500_000):
            topic = token_topic[start : start + 500_000]
            data[start : start + len(topic)] = self.tokens(self.token_types(topic), topic, 0.35)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.documents = TokenVectors(data.numpy(), offsets)
        self.targets = rng.choice(documents, queries, replace=False)
        self.queries = TokenVectors.from_list([self.query(int(d)) for d in self.targets])

    def token_types(self, topic: np.ndarray, own: float = 0.6) -> np.ndarray:
        """A token type per entry of ``topic``: one of the topic's types with probability ``own``, else Zipf."""
        n = len(topic)
        zipf = self.rank_to_type[
            np.minimum(np.searchsorted(self.cdf, self.rng.random(n) * self.cdf[-1]), len(self.cdf) - 1)
        ]
        return np.where(self.rng.random(n) < own, self.topic_types[topic, self.rng.integers(0, 64, n)], zipf)

    def tokens(self, types: np.ndarray, topic: np.ndarray, noise: float) -> torch.Tensor:
        vectors = self.centers[torch.from_numpy(types)] + 0.3 * self.topic_vectors[torch.from_numpy(topic)]
        return unit(vectors + torch.randn(vectors.shape, generator=self.gen) * (noise / DIM**0.5))

    def query(self, target: int) -> np.ndarray:
        own = torch.from_numpy(np.asarray(self.documents[target]))
        picked = own[torch.from_numpy(self.rng.choice(len(own), min(12, len(own)), replace=False))]
        picked = unit(picked + torch.randn(picked.shape, generator=self.gen) * (0.7 / DIM**0.5))
        topic = np.full(32 - len(picked), self.doc_topic[target])
        return torch.cat([picked, self.tokens(self.token_types(topic, 0.5), topic, 0.35)]).numpy()


def exact_scores(query: np.ndarray, documents: TokenVectors, block_tokens: int = 400_000) -> np.ndarray:
    """MaxSim of one query (tokens, dim) against every document: q @ tokens.T by blocks of whole documents, the max
    per document by ``np.maximum.reduceat``, summed over query tokens. Documents have at least one token."""
    q, offsets = torch.from_numpy(np.ascontiguousarray(query)), documents.offsets
    scores = np.empty(len(documents), dtype=np.float32)
    first = 0
    while first < len(documents):
        end = max(int(np.searchsorted(offsets, offsets[first] + block_tokens, side="right")) - 1, first + 1)
        end = min(end, len(documents))
        start, stop = int(offsets[first]), int(offsets[end])
        block = (q @ torch.from_numpy(documents.data[start:stop]).T).numpy()
        scores[first:end] = np.maximum.reduceat(block, offsets[first:end] - start, axis=1).sum(0)
        first = end
    return scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k)[:k]
    return part[np.lexsort((part, -scores[part]))]


def ndcg_at(ranked: np.ndarray, relevant: int, k: int = TOP) -> float:
    """nDCG@k with one relevant document: 1/log2(rank + 2) where it is ranked, 0 when absent."""
    hits = np.flatnonzero(np.asarray(ranked[:k]) == relevant)
    return float(1 / np.log2(hits[0] + 2)) if len(hits) else 0.0


def timed(function: Callable[[int], np.ndarray], count: int) -> tuple[list[np.ndarray], np.ndarray]:
    results, seconds = [], []
    for q in range(count):
        start = time.perf_counter()
        results.append(function(q))
        seconds.append(time.perf_counter() - start)
    return results, np.array(seconds)


def percentiles(seconds: np.ndarray) -> str:
    return f"p50 {np.median(seconds) * 1e3:8.1f} ms  p95 {np.percentile(seconds, 95) * 1e3:8.1f} ms"


class Run:
    """The exact peer's figures, against which every method is reported."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        queries = collection.queries
        start = time.perf_counter()
        self.exact, self.exact_seconds = timed(lambda q: exact_scores(queries[q], collection.documents), len(queries))
        self.truth = [top_k(scores, TOP) for scores in self.exact]
        print(f"exact brute force: {len(queries)} queries in {time.perf_counter() - start:.1f} s", flush=True)
        self.check_exact()

    def check_exact(self) -> None:
        """The brute force's top-10 scores equal maxsim_matrix's on those documents (first 3 queries)."""
        for q in range(min(3, len(self.truth))):
            docs = self.collection.documents.take(self.truth[q])
            reference = maxsim_matrix(self.collection.queries[q : q + 1], docs)[0]
            np.testing.assert_allclose(self.exact[q][self.truth[q]], reference, rtol=1e-5, atol=1e-4)

    def quality(self, ranked: list[np.ndarray]) -> tuple[float, float]:
        """(recall@10 vs the exact top 10, nDCG@10 vs the target document)."""
        recall = np.mean([len(set(r[:TOP].tolist()) & set(t.tolist())) / TOP for r, t in zip(ranked, self.truth)])
        ndcg = np.mean([ndcg_at(r, target) for r, target in zip(ranked, self.collection.targets)])
        return float(recall), float(ndcg)

    def report(self, name: str, ranked: list[np.ndarray], seconds: np.ndarray, extra: str = "") -> None:
        recall, ndcg = self.quality(ranked)
        ratio = np.median(seconds) / np.median(self.exact_seconds)
        print(
            f"  {name:44s} {percentiles(seconds)}  x{ratio:6.4f} of exact  recall@10 {recall:.3f}  nDCG@10 {ndcg:.3f}"
            f"{'  ' + extra if extra else ''}",
            flush=True,
        )

    def searcher_queries(self, searcher: MultiVectorSearcher) -> tuple[list[np.ndarray], np.ndarray]:
        queries = self.collection.queries
        searcher.search(queries[0:1], TOP)  # warm the memory maps
        return timed(lambda q: searcher.search(queries[q : q + 1], TOP)[0].docs, len(queries))


def memory_lines(searcher: MultiVectorSearcher) -> list[str]:
    """The searcher's parts in bytes per 1M tokens, against float32 storage."""
    per = 1e6 / max(searcher.tokens, 1)
    codebooks = len(faiss.serialize_index(searcher.codec))
    fde = len(faiss.serialize_index(searcher.fde_index))
    parts = [
        (f"token codes ({searcher.codec_name}, {searcher.codes.shape[1]} B/token)", searcher.codes.nbytes),
        ("codec codebooks", codebooks),
        (f"FDE index ({searcher.fde_index_name}, {searcher.encoder.dim}-d FDE per chunk)", fde),
        ("chunk offsets + FDE hyperplanes/projections", searcher.nbytes - searcher.codes.nbytes - codebooks - fde),
    ]
    lines = [f"    {name:64s} {size * per / 2**20:8.1f} MiB" for name, size in parts]
    lines.append(f"    {'index total (resident)':64s} {searcher.nbytes * per / 2**20:8.1f} MiB")
    lines.append(f"    {'float32 token vectors (kept on disk, memory-mapped)':64s} {4 * DIM * 1e6 / 2**20:8.1f} MiB")
    lines.append(
        f"    compression: {4 * DIM * searcher.tokens / searcher.nbytes:.1f}x; {searcher.nbytes / max(searcher.tokens, 1):.1f} B/token"
    )
    return lines


def measure_searcher(run: Run, threads: int) -> MultiVectorSearcher:
    documents = run.collection.documents
    start = time.perf_counter()
    searcher = MultiVectorSearcher.from_vectors(documents)
    build = time.perf_counter() - start
    print(
        f"\nMultiVectorSearcher: built in {build:.1f} s ({len(documents)} documents, {searcher.tokens} tokens, "
        f"{threads} threads); candidates {searcher.candidates}",
        flush=True,
    )
    print("  index memory per 1M tokens:")
    print("\n".join(memory_lines(searcher)))
    print(
        f"  {'exact brute force (peer)':44s} {percentiles(run.exact_seconds)}  recall@10 1.000  nDCG@10 {run.quality(run.truth)[1]:.3f}"
    )
    for mode in ("vectors", "codes"):
        searcher.rescore = mode
        ranked, seconds = run.searcher_queries(searcher)
        run.report(f"searcher rescore={mode!r}", ranked, seconds)
    searcher.rescore = "vectors"
    return searcher


def round_trip(run: Run, searcher: MultiVectorSearcher) -> None:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        searcher.save(Path(folder) / "index")
        saved = time.perf_counter() - start
        start = time.perf_counter()
        loaded = MultiVectorSearcher.load(Path(folder) / "index")
        opened = time.perf_counter() - start
        ranked, seconds = run.searcher_queries(loaded)
        before, _ = run.searcher_queries(searcher)
        same = all(np.array_equal(a, b) for a, b in zip(ranked, before))
        run.report("loaded (memory-mapped)", ranked, seconds, f"save {saved:.1f} s, load {opened:.2f} s, same: {same}")


# --- alternatives ---------------------------------------------------------------------------------------------


class SignCodec:
    """Sign bits of the raw vector (16 B at 128-d); decoded as +-1 (then normalised)."""

    def __init__(self, dim: int) -> None:
        self.d = dim

    def sa_code_size(self) -> int:
        return (self.d + 7) // 8

    def sa_encode(self, x: np.ndarray) -> np.ndarray:
        return np.packbits(x > 0, axis=1)

    def sa_decode(self, codes: np.ndarray) -> np.ndarray:
        return np.unpackbits(codes, axis=1)[:, : self.d].astype(np.float32) * 2 - 1


class ResidualCodec:
    """PLAID/ColBERTv2-style: the nearest of ``centroids`` k-means centroids (2-byte id) plus each dimension's
    residual in ``bits``-bit buckets (cut at the residuals' per-dimension quantiles, decoded as the bucket's median)."""

    def __init__(self, sample: np.ndarray, centroids: int, bits: int = 2, seed: int = 0) -> None:
        self.d, self.bits = sample.shape[1], bits
        kmeans = faiss.Kmeans(self.d, centroids, niter=10, spherical=True, seed=seed, max_points_per_centroid=64)
        kmeans.train(sample)
        self.centroids = kmeans.centroids
        self.index = faiss.IndexFlatIP(self.d)
        self.index.add(self.centroids)
        residuals = sample - self.centroids[self.assign(sample)]
        levels = 2**bits
        self.cutoffs = np.quantile(residuals, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)
        self.weights = np.quantile(residuals, (np.arange(levels) + 0.5) / levels, axis=0).T.astype(np.float32)

    def assign(self, x: np.ndarray) -> np.ndarray:
        return self.index.search(np.ascontiguousarray(x), 1)[1][:, 0]

    def sa_code_size(self) -> int:
        return 2 + self.d * self.bits // 8

    def sa_encode(self, x: np.ndarray) -> np.ndarray:
        ids = self.assign(x)
        residuals = x - self.centroids[ids]
        buckets = (residuals[:, :, None] > self.cutoffs[None]).sum(-1).astype(np.uint8)
        per = 8 // self.bits
        buckets = buckets.reshape(len(x), -1, per)
        packed = np.zeros(buckets.shape[:2], np.uint8)
        for k in range(per):
            packed |= buckets[:, :, k] << (self.bits * k)
        return np.concatenate([ids.astype(np.uint16)[:, None].view(np.uint8), packed], axis=1)

    def sa_decode(self, codes: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(codes[:, :2]).view(np.uint16)[:, 0]
        per, mask = 8 // self.bits, (1 << self.bits) - 1
        packed = codes[:, 2:]
        buckets = np.stack([(packed >> (self.bits * k)) & mask for k in range(per)], -1).reshape(len(codes), -1)
        return self.centroids[ids] + self.weights[np.arange(self.d)[None, :], buckets]


def alternative_codecs(run: Run, base: MultiVectorSearcher) -> None:
    """Token codecs, each rescoring the same FDE candidates from decoded codes."""
    data = run.collection.documents.data
    print("\ntoken codecs (rescore='codes' on the same candidates; bytes per token of the codes alone):", flush=True)
    sample = np.ascontiguousarray(data[np.random.default_rng(1).choice(len(data), 65_536, replace=False)])
    choices: list[tuple[str, Callable[[], object]]] = [
        (name, lambda name=name: build_codec(data, name)) for name in ("PQ16", "PQ32", "PQ64", "SQ4", "SQ8")
    ]
    choices.append(("sign bits", lambda: SignCodec(DIM)))
    choices.append(("IVF-1024 + 2-bit residual (PLAID)", lambda: ResidualCodec(sample, 1024, 2)))
    for name, make in choices:
        start = time.perf_counter()
        codec = make()
        trained = time.perf_counter() - start
        start = time.perf_counter()
        codes = encode_tokens(codec, data)
        encoded = time.perf_counter() - start
        searcher = MultiVectorSearcher(
            base.offsets, codes, codec, base.encoder, base.fde_index, candidates=base.candidates, rescore="codes"
        )
        ranked, seconds = run.searcher_queries(searcher)
        run.report(
            f"{name} ({codes.shape[1]} B/token)", ranked, seconds, f"train {trained:.1f} s, encode {encoded:.1f} s"
        )


def alternative_fde_indexes(run: Run, base: MultiVectorSearcher) -> None:
    """FDE indexes and candidate counts, exact rescoring."""
    documents = run.collection.documents
    dim = base.encoder.dim
    print(f"\nFDE indexes over {dim}-d FDEs (exact rescoring; index bytes per document):", flush=True)
    for name in ("Flat", "SQ8", f"PQ{dim // 2}x4fs", f"PQ{dim // 4}x4fs"):
        start = time.perf_counter()
        index = build_fde_index(base.encoder, documents, name)
        built = time.perf_counter() - start
        size = len(faiss.serialize_index(index)) / len(documents)
        for candidates in (256, 1024):
            searcher = MultiVectorSearcher(
                base.offsets, base.codes, base.codec, base.encoder, index, vectors=documents.data, candidates=candidates
            )
            ranked, seconds = run.searcher_queries(searcher)
            run.report(f"{name} C={candidates}", ranked, seconds, f"{size:.0f} B/doc, built {built:.1f} s")
        del index


def alternative_fde_settings(run: Run) -> None:
    print("\nFDE settings (default index and candidates, exact rescoring):", flush=True)
    for config in (FDEConfig(repetitions=5), FDEConfig(repetitions=20), FDEConfig(repetitions=20, simhash_bits=5)):
        start = time.perf_counter()
        searcher = MultiVectorSearcher.from_vectors(run.collection.documents, fde=config)
        built = time.perf_counter() - start
        ranked, seconds = run.searcher_queries(searcher)
        name = f"R={config.repetitions} k_sim={config.simhash_bits} d_proj={config.projection_dim} ({config.dim}-d)"
        run.report(name, ranked, seconds, f"built {built:.1f} s, {searcher.nbytes / searcher.tokens:.1f} B/token")


class PlaidCandidates:
    """PLAID-style candidate generation (Santhanam et al. 2022), for comparison: two-level spherical k-means over a
    sample of tokens (``groups`` x ~``centroids / groups``), every token assigned through FAISS's IVF over the
    centroids (``assign_probe`` groups), per centroid the list of documents with a token there; a query token's
    nearest centroid's documents gain its centroid score, the best ``pool`` documents are scored by centroid
    interaction (sum over query tokens of the max centroid score of the document's tokens), the best ``rescore`` of
    those by exact MaxSim."""

    def __init__(
        self, documents: TokenVectors, centroids: int = 16384, groups: int = 128, assign_probe: int = 2
    ) -> None:
        data, rng = documents.data, np.random.default_rng(0)
        sample = np.ascontiguousarray(
            data[np.sort(rng.choice(len(data), min(len(data), 16 * centroids), replace=False))]
        )
        top = faiss.Kmeans(DIM, groups, niter=8, spherical=True, seed=0, max_points_per_centroid=64)
        top.train(sample)
        group_of = top.index.search(sample, 1)[1][:, 0]
        sizes = np.bincount(group_of, minlength=groups)
        share = np.maximum(1, np.round(sizes / sizes.sum() * centroids).astype(int))
        parts = []
        for g in range(groups):
            points = sample[group_of == g]
            k = min(share[g], len(points))
            if k:
                kmeans = faiss.Kmeans(DIM, k, niter=8, spherical=True, seed=0, max_points_per_centroid=64)
                kmeans.train(points)
                parts.append(kmeans.centroids)
        self.centroids = np.concatenate(parts)
        ivf = faiss.IndexIVFFlat(top.index, DIM, groups, faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained, ivf.nprobe = True, assign_probe
        ivf.add(self.centroids)
        self.codes = np.concatenate(
            [ivf.search(np.ascontiguousarray(data[s : s + 262_144]), 1)[1][:, 0] for s in range(0, len(data), 262_144)]
        )
        chunk_of = np.repeat(np.arange(len(documents)), documents.lengths)
        keys = np.unique(self.codes * len(documents) + chunk_of)
        self.indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(keys // len(documents), minlength=len(self.centroids)))]
        )
        self.lists = (keys % len(documents)).astype(np.int32)
        self.documents = documents
        self.kept = (top, ivf)  # FAISS holds raw pointers to the quantizer

    def search(self, query: np.ndarray, pool: int, rescore: int) -> np.ndarray:
        scores = torch.from_numpy(query) @ torch.from_numpy(self.centroids).T
        scores = scores.numpy()
        nearest = scores.argmax(1)
        sizes = self.indptr[nearest + 1] - self.indptr[nearest]
        hits = np.concatenate([self.lists[self.indptr[c] : self.indptr[c + 1]] for c in nearest])
        gained = np.bincount(
            hits, weights=np.repeat(scores[np.arange(len(query)), nearest], sizes), minlength=len(self.documents)
        )
        found = np.flatnonzero(gained)
        found = found[np.argsort(-gained[found], kind="stable")[:pool]]
        offsets = self.documents.offsets
        rows = np.concatenate([np.arange(offsets[d], offsets[d + 1]) for d in found])
        local = np.concatenate([[0], np.cumsum(offsets[found + 1] - offsets[found])])
        interaction = np.maximum.reduceat(scores[:, self.codes[rows]], local[:-1], axis=1).sum(0)
        kept = np.sort(found[np.argsort(-interaction, kind="stable")[:rescore]])
        exact = maxsim_matrix(TokenVectors.from_list([query]), self.documents.take(kept))[0]
        return kept[np.lexsort((kept, -exact))][:TOP]


def alternative_plaid(run: Run) -> None:
    print("\nPLAID-style IVF candidates (16384 centroids, exact rescoring):", flush=True)
    start = time.perf_counter()
    plaid = PlaidCandidates(run.collection.documents)
    built = time.perf_counter() - start
    lists = len(plaid.lists) * 4 + len(plaid.indptr) * 8
    size = (len(plaid.codes) * 2 + lists + plaid.centroids.nbytes) / len(plaid.codes)
    queries = run.collection.queries
    for pool, rescore in ((2048, 128), (4096, 256), (8192, 512)):
        ranked, seconds = timed(lambda q, p=pool, r=rescore: plaid.search(queries[q], p, r), len(queries))
        run.report(
            f"PLAID pool={pool} rescore={rescore}",
            ranked,
            seconds,
            f"built {built:.1f} s, {size:.1f} B/token (ids+lists+centroids)",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and FAISS threads")
    parser.add_argument("--alternatives", action="store_true", help="also measure the alternatives (minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(cpu_description())
    start = time.perf_counter()
    collection = Collection(args.documents, args.queries, args.seed)
    documents = collection.documents
    print(
        f"collection: {len(documents)} documents, {len(documents.data)} tokens x {DIM}-d "
        f"({documents.data.nbytes / 2**20:.0f} MiB float32), {args.queries} queries x 32 tokens; "
        f"generated in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    run = Run(collection)
    searcher = measure_searcher(run, args.threads)
    round_trip(run, searcher)
    if args.alternatives:
        alternative_codecs(run, searcher)
        alternative_fde_indexes(run, searcher)
        alternative_fde_settings(run)
        alternative_plaid(run)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
