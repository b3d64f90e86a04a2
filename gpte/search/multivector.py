"""Search over chunks' token vectors (ColBERT-style multi-vector models) by MaxSim: MUVERA candidates from a FAISS
index, then MaxSim rescoring of those candidates, from the float vectors or from compressed token codes.

    searcher = MultiVectorSearcher.from_vectors(chunk_vectors, layout)     # TokenVectors, one text per chunk
    rankings = searcher.search(query_vectors, top=10, allowed=mask)        # one Ranking per query text
    searcher.save(folder); MultiVectorSearcher.load(folder, layout)        # memory-mapped

The three stages, per query:

1. **Candidates** (MUVERA, Jayaram et al. 2024, "MUVERA: Multi-Vector Retrieval via Fixed Dimensional
   Encodings"): every chunk and query becomes one fixed-dimensional encoding (FDE) whose inner product approximates
   MaxSim (``FixedDimensionalEncoder``); a FAISS index over the chunks' FDEs returns the ``candidates`` best chunks
   (FAISS's own ``IDSelectorBitmap`` applies ``allowed`` where the index type supports it, else the search
   oversamples by the filter's selectivity and drops the chunks outside it).
2. **Rescoring**: ``gpte.models.multivector.maxsim.maxsim_matrix`` over the candidates' token vectors, either the
   float vectors (``rescore="vectors"``, exact scores; the ``tokens.npy`` file is memory-mapped, so only the
   candidates' rows are read) or the vectors decoded from the token codes (``rescore="codes"``: FAISS's standalone
   codec ``sa_decode``, each row L2-normalised again; approximate scores, and no float vectors needed).
3. **Documents** rank by their best chunk (``gpte.search.ranking.rank_chunk_scores``).

When the chunks that may be returned (those with tokens, inside ``allowed``) are no more than ``candidates``, every
one of them is rescored: the search is then exact.

Why this design: ``benchmarks/multivector_search.py --alternatives`` on 100k synthetic clustered documents (Poisson(30)
tokens, 3.0M tokens x 128-d) and 30 queries of 32 tokens, one query at a time on 2 shared AVX-512 cores, exact
brute-force MaxSim p50 663 ms; recall@10 is of the exact MaxSim top 10 (the latencies of the alternatives were
partly taken while another process shared the cores; the recalls are exact counts):

- **Candidates.** MUVERA FDEs (10 repetitions x 16 parts x 8 dims = 1280-d) in FAISS 4-bit PQ fast scan
  (``PQ640x4fs``: 321 B per chunk, ~10 MiB per 1M tokens), 1024 candidates rescored: recall 0.990, p50 32 ms =
  0.048x the brute force; 256 candidates: 0.957. The same FDEs in a flat float index (5120 B/chunk) or SQ8 (1280
  B/chunk) reach 0.987 / 0.957, a smaller fast scan (``PQ320x4fs``, 161 B) 0.977 / 0.907. Larger FDEs reach 1.000
  (20 repetitions, 2560-d, 38 ms) but take 3-5x the build time (90-117 s against 24 s); 5 repetitions give 0.843.
  PLAID-style IVF candidates (Santhanam et al. 2022; two-level FAISS k-means to 16384 centroids, every token
  assigned through a FAISS IVF over the centroids, per centroid its documents, a query token's nearest centroid's
  documents, centroid interaction, exact rescoring) reached 0.853 / 0.880 / 0.913 at 27 / 58 / 116 ms: with token
  to centroid cosines of ~0.65 (measured while choosing) the centroid interaction ranks too coarsely, and the
  build needs k-means over the tokens. MUVERA wins on recall per millisecond, needs no clustering (build: 24 s for 3M tokens) and leaves
  filtering to FAISS.
- **Token codes** (``rescore="codes"`` on the same candidates; bytes per token): FAISS PQ16 16 B 0.877, sign bits
  16 B 0.910, **PQ32 32 B 0.937** (the default codec: train 3 s, encode 6 s), PLAID/ColBERTv2 IVF-1024 centroid +
  2-bit residual buckets 34 B 0.907 (encode 18 s), SQ4 64 B 0.970, PQ64 64 B 0.980, SQ8 (int8) 128 B 0.987;
  the float vectors (512 B) 0.990. PQ gives the best recall per byte up to 34 B; ``codec="PQ64"`` or ``"SQ8"``
  for near-exact rescoring without float vectors.
- **Rescoring**: from the float vectors (memory-mapped): recall 0.990, p50 32 ms; from PQ32 codes: 0.937, 47 ms
  (decoding ~30k tokens costs more than reading their floats from the page cache). The index proper (codes, FDE
  index, offsets) is 41 MiB per 1M tokens (43 B/token) against 488 MiB of float32: 11.9x; when rescoring from
  the vectors the codes are never read, so what stays resident is the FDE index and offsets plus the pages of the
  candidates' vectors.
- nDCG@10 against each query's target document was 1.000 for every method (every method ranks the target first:
  that relevance is saturated on this synthetic data; recall against the exact top 10 separates the methods).

On disk (``save``), a folder written under a temporary name and moved into place when complete (``gpte.atomic``):

    format.json          {"format": "gpte-multivector-index", "version": 1, "dim", "chunks", "tokens", "similarity",
                          "codec", "fde_index", "fde": {repetitions, simhash_bits, projection_dim}, "candidates",
                          "rescore", "vectors": true|false}
    offsets.npy          (chunks + 1,) int64: chunk i's tokens are rows offsets[i]:offsets[i+1]
    codes.npy            (tokens, code bytes) uint8: each token's FAISS codec code (memory-mapped)
    codec.faiss          the trained FAISS codec (an empty index of the ``codec`` factory string)
    fde.faiss            the FAISS index of the chunks' FDEs (``fde_index`` factory string, inner product)
    fde_hyperplanes.npy  (dim, repetitions x simhash_bits) float32: the SimHash hyperplanes
    fde_projections.npy  (dim, repetitions x projection_dim) float32: the +-1/sqrt(projection_dim) projections
    tokens.npy           (tokens, dim) float32: the float vectors, when kept (memory-mapped)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from gpte.atomic import atomic_path
from gpte.models.multivector.maxsim import check_similarity, maxsim_matrix
from gpte.models.multivector.vectors import TokenVectors
from gpte.search.ranking import DocumentLayout, Ranking, rank_chunk_scores

FORMAT = "gpte-multivector-index"
FORMAT_VERSION = 1
FORMAT_FILE = "format.json"
RESCORE_MODES = ("vectors", "codes")
DEFAULT_CANDIDATES = 1024
ENCODE_BLOCK_TOKENS = 131_072  # tokens turned into FDEs or codes at a time (bounds the build's extra memory)
TRAINING_TOKENS = 65_536  # token sample on which the codec is trained
TRAINING_CHUNKS = 8_192  # chunk sample on whose FDEs the FDE index is trained
PQ_MIN_TOKENS = 39 * 256  # FAISS's advice for 8-bit PQ training: fewer tokens fall back to the SQ8 codec
FAST_SCAN_MIN_CHUNKS = 39 * 16  # the same for the 4-bit fast-scan FDE index: fewer chunks use a flat index
FILES = {
    "offsets": "offsets.npy",
    "codes": "codes.npy",
    "codec": "codec.faiss",
    "fde": "fde.faiss",
    "hyperplanes": "fde_hyperplanes.npy",
    "projections": "fde_projections.npy",
    "vectors": "tokens.npy",
}


@dataclass(frozen=True)
class FDEConfig:
    """MUVERA's encoding settings: ``repetitions`` independent SimHash partitions of ``2**simhash_bits`` parts,
    each part's vector projected to ``projection_dim``; the FDE has repetitions x 2**simhash_bits x projection_dim
    dimensions. ``seed`` draws the hyperplanes and projections."""

    repetitions: int = 10
    simhash_bits: int = 4
    projection_dim: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("repetitions", 1, 256), ("simhash_bits", 0, 10), ("projection_dim", 1, 4096)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"FDE {name} must be an integer in [{low}, {high}], got {value!r}")

    @property
    def partitions(self) -> int:
        return 2**self.simhash_bits

    @property
    def dim(self) -> int:
        return self.repetitions * self.partitions * self.projection_dim


class FixedDimensionalEncoder:
    """MUVERA fixed-dimensional encodings (Jayaram et al. 2024, section 2): for repetition r, token x falls in part
    p_r(x) = the sign pattern of x against ``simhash_bits`` random Gaussian hyperplanes; then

        FDE_q[r, p] = sum over query tokens q in part p of S_r q                  (queries: sums)
        FDE_d[r, p] = mean over document tokens d in part p of S_r d              (documents: means)

    with S_r a random +-1/sqrt(projection_dim) matrix (projection_dim x dim). A document's empty part takes S_r d of
    its token whose sign pattern is nearest in Hamming distance (the first such token), so <FDE_q, FDE_d> sums, over
    the query tokens, a similarity to the document's tokens that share the query token's part: an estimate of
    MaxSim(q, d) = sum_i max_j q_i . d_j.

    Args:
        hyperplanes: (dim, repetitions x simhash_bits) float32.
        projections: (dim, repetitions x projection_dim) float32.
        config: the settings the arrays were drawn for.
    """

    def __init__(self, hyperplanes: np.ndarray, projections: np.ndarray, config: FDEConfig) -> None:
        dim = hyperplanes.shape[0]
        expected = ((dim, config.repetitions * config.simhash_bits), (dim, config.repetitions * config.projection_dim))
        if (hyperplanes.shape, projections.shape) != expected:
            raise ValueError(f"FDE arrays have shapes {hyperplanes.shape}, {projections.shape}; expected {expected}")
        self.config = config
        self.hyperplanes = torch.from_numpy(np.ascontiguousarray(hyperplanes, dtype=np.float32))
        self.projections = torch.from_numpy(np.ascontiguousarray(projections, dtype=np.float32))
        powers = 1 << np.arange(config.simhash_bits)
        parts = np.arange(config.partitions)
        self._powers = powers
        self._hamming = np.array(
            [[bin(a ^ b).count("1") for b in parts] for a in parts], dtype=np.int32
        )  # (partitions, partitions)

    @classmethod
    def random(cls, dim: int, config: FDEConfig) -> FixedDimensionalEncoder:
        """Hyperplanes N(0, 1) and projections +-1/sqrt(projection_dim), drawn from ``config.seed``."""
        rng = np.random.default_rng(config.seed)
        hyperplanes = rng.standard_normal((dim, config.repetitions * config.simhash_bits)).astype(np.float32)
        signs = rng.integers(0, 2, (dim, config.repetitions * config.projection_dim)) * 2 - 1
        return cls(hyperplanes, (signs / math.sqrt(config.projection_dim)).astype(np.float32), config)

    @property
    def dim(self) -> int:
        return self.config.dim

    def encode(self, vectors: TokenVectors, role: str) -> np.ndarray:
        """(texts, FDE dim) float32 encodings of ``vectors`` as ``role`` "query" (sums) or "document" (means, empty
        parts filled); a text without tokens encodes as zeros."""
        if role not in ("query", "document"):
            raise ValueError(f"FDE role must be 'query' or 'document', got {role!r}")
        out = np.zeros((len(vectors), self.dim), dtype=np.float32)
        for first, end in _text_blocks(vectors.offsets, ENCODE_BLOCK_TOKENS):
            start, stop = int(vectors.offsets[first]), int(vectors.offsets[end])
            lengths = vectors.lengths[first:end]
            out[first:end] = self._encode_block(vectors.data[start:stop], lengths, role == "document")
        return out

    def _encode_block(self, data: np.ndarray, lengths: np.ndarray, document: bool) -> np.ndarray:
        """FDEs (texts, FDE dim) of consecutive texts with ``lengths`` whose tokens are the rows of ``data``."""
        cfg = self.config
        texts, parts_per_text = len(lengths), cfg.repetitions * cfg.partitions
        x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        signs = (x @ self.hyperplanes > 0).numpy().reshape(len(x), cfg.repetitions, cfg.simhash_bits)
        parts = (signs * self._powers).sum(-1)  # (tokens, repetitions)
        projected = (x @ self.projections).reshape(len(x) * cfg.repetitions, cfg.projection_dim)
        text_of_token = np.repeat(np.arange(texts), lengths)
        slot = (text_of_token[:, None] * cfg.repetitions + np.arange(cfg.repetitions)) * cfg.partitions + parts
        sums = torch.zeros(texts * parts_per_text, cfg.projection_dim)
        sums.index_add_(0, torch.from_numpy(slot.reshape(-1)), projected)
        sums = sums.numpy()
        if document:
            counts = np.bincount(slot.reshape(-1), minlength=len(sums)).astype(np.float32)
            sums /= np.maximum(counts, 1)[:, None]
            self._fill_empty(sums, counts, parts, projected.numpy(), lengths)
        return sums.reshape(texts, -1)

    def _fill_empty(
        self, means: np.ndarray, counts: np.ndarray, parts: np.ndarray, projected: np.ndarray, lengths: np.ndarray
    ) -> None:
        """Give each empty part of each non-empty text the projection of the text's token nearest to the part in
        Hamming distance (ties: the first token), in place."""
        cfg = self.config
        nonempty = np.flatnonzero(lengths)
        empty = (counts == 0).reshape(len(lengths), cfg.repetitions, cfg.partitions)[nonempty]
        if not len(nonempty) or not empty.any():
            return
        starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
        position = (np.arange(len(parts)) - np.repeat(starts, lengths)).astype(np.int32)  # position in its text
        width = int(lengths.max()) + 1
        key = self._hamming[parts] * width + position[:, None, None]  # (tokens, repetitions, partitions)
        nearest = np.minimum.reduceat(key, starts[nonempty], axis=0) % width + starts[nonempty][:, None, None]
        text, rep, part = np.nonzero(empty)
        token = nearest[text, rep, part]
        slots = (nonempty[text] * cfg.repetitions + rep) * cfg.partitions + part
        means[slots] = projected.reshape(len(parts), cfg.repetitions, -1)[token, rep]


def _text_blocks(offsets: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Text ranges [first, end) holding at most ``max_tokens`` tokens each (or one text)."""
    blocks, first, texts = [], 0, len(offsets) - 1
    while first < texts:
        end = int(np.searchsorted(offsets, offsets[first] + max_tokens, side="right")) - 1
        end = min(max(end, first + 1), texts)
        blocks.append((first, end))
        first = end
    return blocks


def default_codec(dim: int, tokens: int) -> str:
    """The token codec: FAISS product quantisation with 4-d sub-vectors and 8-bit codes (``PQ{dim/4}``: 32 bytes
    for 128-d), or 8-bit scalar quantisation (``SQ8``) when the dimension is not a multiple of 4 or there are
    too few tokens to train PQ's 256 centroids."""
    return f"PQ{dim // 4}" if dim % 4 == 0 and tokens >= PQ_MIN_TOKENS else "SQ8"


def default_fde_index(fde_dim: int, chunks: int) -> str:
    """The FDE index: FAISS 4-bit PQ fast scan with 2-d sub-vectors (``PQ{fde_dim/2}x4fs``), or an exact flat
    index for corpora too small to train it."""
    return f"PQ{fde_dim // 2}x4fs" if fde_dim % 2 == 0 and chunks >= FAST_SCAN_MIN_CHUNKS else "Flat"


def _factory(dim: int, description: str, what: str, metric: int = faiss.METRIC_L2) -> faiss.Index:
    try:
        return faiss.index_factory(dim, description, metric)
    except RuntimeError as error:
        raise ValueError(
            f"{what} {description!r} is not a FAISS index factory string for {dim}-d vectors "
            f"(examples: 'PQ32', 'SQ8', 'SQ4' for codecs; 'PQ640x4fs', 'SQ8', 'Flat', 'HNSW32' for the FDE index): {error}"
        ) from error


def _sample_rows(total: int, count: int, seed: int) -> np.ndarray:
    if total <= count:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, count, replace=False))


def build_codec(data: np.ndarray, description: str, seed: int = 0) -> faiss.Index:
    """A FAISS codec (``description``: an index factory string with a standalone codec) trained on a sample of the
    token vectors ``data``."""
    codec = _factory(data.shape[1], description, "codec")
    if isinstance(codec, faiss.IndexPQ):
        codec.do_polysemous_training = False  # only for polysemous search, which decoding never uses (6x the time)
    if not codec.is_trained:
        if not len(data):
            return codec  # nothing to train on and nothing to encode
        codec.train(np.ascontiguousarray(data[_sample_rows(len(data), TRAINING_TOKENS, seed)], dtype=np.float32))
    return codec


def encode_tokens(codec: faiss.Index, data: np.ndarray) -> np.ndarray:
    """(tokens, code bytes) uint8: ``codec.sa_encode`` of every row of ``data``, in blocks."""
    codes = np.empty((len(data), codec.sa_code_size()), dtype=np.uint8)
    for start in range(0, len(data), ENCODE_BLOCK_TOKENS):
        block = np.ascontiguousarray(data[start : start + ENCODE_BLOCK_TOKENS], dtype=np.float32)
        codes[start : start + len(block)] = codec.sa_encode(block)
    return codes


def decode_tokens(codec: faiss.Index, codes: np.ndarray) -> np.ndarray:
    """(tokens, dim) float32 unit rows decoded from ``codes`` (``codec.sa_decode``, then L2-normalised as ColBERTv2
    normalises its decompressed vectors; an all-zero row stays zero)."""
    if not len(codes):
        return np.zeros((0, codec.d), dtype=np.float32)
    vectors = codec.sa_decode(np.ascontiguousarray(codes))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1).astype(np.float32)


def build_fde_index(encoder: FixedDimensionalEncoder, vectors: TokenVectors, description: str) -> faiss.Index:
    """The FAISS index (inner product) of every text's document FDE; trained on the FDEs of a sample of texts,
    then filled block by block (so the whole FDE matrix is never held)."""
    index = _factory(encoder.dim, description, "FDE index", faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained and len(vectors):
        sample = _sample_rows(len(vectors), TRAINING_CHUNKS, encoder.config.seed)
        index.train(encoder.encode(vectors.take(sample), "document"))
    for first, end in _text_blocks(vectors.offsets, 16 * ENCODE_BLOCK_TOKENS):
        index.add(encoder.encode(_texts(vectors, first, end), "document"))
    return index


def _texts(vectors: TokenVectors, first: int, end: int) -> TokenVectors:
    """Texts [first, end) of ``vectors`` as a view (no copy of the tokens)."""
    start, stop = int(vectors.offsets[first]), int(vectors.offsets[end])
    return TokenVectors(vectors.data[start:stop], vectors.offsets[first : end + 1] - start)


def _token_rows(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The token rows of texts ``rows`` (in that order) and their offsets within that selection."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.repeat(starts - local[:-1], lengths) + np.arange(local[-1]), local


def _selector(mask: np.ndarray) -> faiss.IDSelectorBitmap:
    bits = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    selector.bits_array = bits  # FAISS keeps a raw pointer: keep the array alive with the selector
    return selector


def _one_per_document(rows: int) -> DocumentLayout:
    return DocumentLayout(np.arange(rows, dtype=np.int64), np.ones(rows, dtype=np.int64))


class MultiVectorSearcher:
    """Top-k documents by MaxSim over their chunks' token vectors: MUVERA candidates, MaxSim rescoring (module
    docstring); documents rank by their best chunk.

    Args:
        offsets: (chunks + 1,) int64 token offsets of the chunks (``TokenVectors.offsets``).
        codes: (tokens, code bytes) uint8 token codes of ``codec``.
        codec: the trained FAISS codec of the token vectors.
        encoder: the FDE encoder.
        fde_index: the FAISS index of the chunks' document FDEs, one per chunk row in order.
        layout: which chunk rows belong to which document (None: each row is a document).
        vectors: (tokens, dim) float32 token vectors (a memory map after ``load``), or None when not kept.
        similarity: "maxsim" or "meanmaxsim" (``gpte.models.multivector.maxsim``).
        candidates: chunks fetched from the FDE index per query and rescored.
        rescore: "vectors" (exact, needs ``vectors``) or "codes" (decoded token codes); None: "vectors" if kept.
        names: the FAISS factory strings of the codec and the FDE index (kept in ``format.json``).
    """

    def __init__(
        self,
        offsets: np.ndarray,
        codes: np.ndarray,
        codec: faiss.Index,
        encoder: FixedDimensionalEncoder,
        fde_index: faiss.Index,
        layout: DocumentLayout | None = None,
        vectors: np.ndarray | None = None,
        similarity: str = "maxsim",
        candidates: int = DEFAULT_CANDIDATES,
        rescore: str | None = None,
        names: tuple[str, str] = ("", ""),
    ) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.codes, self.codec, self.encoder, self.fde_index = codes, codec, encoder, fde_index
        self.vectors = vectors
        self.similarity = check_similarity(similarity)
        self.layout = layout if layout is not None else _one_per_document(len(self))
        if int(self.layout.counts.sum()) != len(self):
            raise ValueError(f"the layout covers {int(self.layout.counts.sum())} chunks, the vectors {len(self)}")
        if fde_index.ntotal != len(self) or len(codes) != self.offsets[-1]:
            raise ValueError(
                f"the FDE index holds {fde_index.ntotal} chunks and the codes {len(codes)} tokens; "
                f"the offsets describe {len(self)} chunks of {int(self.offsets[-1])} tokens"
            )
        if not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
        self.candidates = candidates
        self.rescore = rescore if rescore is not None else ("vectors" if vectors is not None else "codes")
        self._searchable = self.offsets[1:] > self.offsets[:-1]  # chunks with at least one token
        self.codec_name, self.fde_index_name = names
        self._faiss_bytes: int | None = None

    @classmethod
    def from_vectors(
        cls,
        vectors: TokenVectors,
        layout: DocumentLayout | None = None,
        *,
        similarity: str = "maxsim",
        fde: FDEConfig | None = None,
        fde_index: str | None = None,
        codec: str | None = None,
        candidates: int = DEFAULT_CANDIDATES,
        keep_vectors: bool = True,
        rescore: str | None = None,
    ) -> MultiVectorSearcher:
        """A searcher over chunk token vectors (one text of ``vectors`` per chunk row).

        Args:
            vectors: the chunks' token vectors (unit rows, as ``MultiVectorEncoder.encode`` gives).
            layout: chunk rows of each document (None: one chunk per document).
            similarity: "maxsim" or "meanmaxsim".
            fde: MUVERA settings (None: ``FDEConfig()``, 1280-d).
            fde_index: FAISS index factory string for the FDEs (None: ``default_fde_index``).
            codec: FAISS factory string of the token codec (None: ``default_codec``, PQ with 32 bytes at 128-d).
            candidates: chunks fetched per query and rescored by MaxSim.
            keep_vectors: keep the float vectors (not copied; saved as ``tokens.npy``) for exact rescoring.
            rescore: "vectors" or "codes" (None: "vectors" when kept).
        """
        if not isinstance(vectors, TokenVectors):
            raise TypeError(f"from_vectors takes TokenVectors, got {type(vectors).__name__}")
        config = fde or FDEConfig()
        encoder = FixedDimensionalEncoder.random(vectors.dim, config)
        codec = codec or default_codec(vectors.dim, len(vectors.data))
        fde_index = fde_index or default_fde_index(config.dim, len(vectors))
        token_codec = build_codec(vectors.data, codec, config.seed)
        index = build_fde_index(encoder, vectors, fde_index)
        return cls(
            vectors.offsets,
            encode_tokens(token_codec, vectors.data),
            token_codec,
            encoder,
            index,
            layout,
            vectors.data if keep_vectors else None,
            similarity,
            candidates,
            rescore,
            (codec, fde_index),
        )

    @property
    def rescore(self) -> str:
        """What candidates are rescored from: "vectors" (exact MaxSim) or "codes" (decoded token codes)."""
        return self._rescore

    @rescore.setter
    def rescore(self, mode: str) -> None:
        if mode not in RESCORE_MODES:
            raise ValueError(f"unknown rescore mode {mode!r}; choose one of {', '.join(RESCORE_MODES)}")
        if mode == "vectors" and self.vectors is None:
            raise ValueError("rescore='vectors' needs the float token vectors; this index was built without them")
        self._rescore = mode

    def __len__(self) -> int:
        """Chunk rows."""
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return int(self.codec.d)

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed index (what a search keeps resident): token codes, codec codebooks, FDE index,
        offsets and FDE arrays; the float vectors are not counted (``vector_bytes``)."""
        if self._faiss_bytes is None:
            self._faiss_bytes = len(faiss.serialize_index(self.codec)) + len(faiss.serialize_index(self.fde_index))
        fde_arrays = self.encoder.hyperplanes.numel() * 4 + self.encoder.projections.numel() * 4
        return int(self.codes.nbytes + self.offsets.nbytes + fde_arrays + self._faiss_bytes)

    @property
    def vector_bytes(self) -> int:
        """Bytes of the float token vectors kept for exact rescoring (0 when not kept)."""
        return 0 if self.vectors is None else int(self.vectors.nbytes)

    def search(self, queries: TokenVectors, top: int, allowed: np.ndarray | None = None) -> list[Ranking]:
        """The ``top`` documents for each query (a text of ``queries``), best first, ties by position, scored by
        MaxSim of their best candidate chunk; ``allowed`` (a boolean mask over chunks) restricts the search to those
        chunks. A query without tokens, or an index without tokens, has no hits.

        Raises:
            ValueError: ``top`` < 1, queries of another dimension, a mask of another length.
        """
        queries = self._check_queries(queries)
        if not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be a positive integer, got {top!r}")
        searchable = self._searchable if allowed is None else self._searchable & self._check_mask(allowed)
        candidates = self._candidates(queries, searchable, max(self.candidates, int(top)))
        return [self._ranked(queries[q], rows, int(top)) for q, rows in enumerate(candidates)]

    def document_scores(self, query: TokenVectors | np.ndarray, docs: np.ndarray) -> np.ndarray:
        """The score of each document position in ``docs`` for one query (a (tokens, dim) array or a TokenVectors of
        one text): its best chunk's MaxSim from the ``rescore`` source, as in the rankings (a document whose chunks
        have no token scores ``EMPTY_DOCUMENT_SCORE``, -1e9)."""
        query = self._check_queries(query if isinstance(query, TokenVectors) else TokenVectors.from_list([query]))
        if len(query) != 1:
            raise ValueError(f"document_scores takes one query, got {len(query)}")
        docs = np.asarray(docs, dtype=np.int64).reshape(-1)
        if not len(docs):
            return np.empty(0, np.float32)
        counts = self.layout.counts[docs]
        rows = np.concatenate([np.arange(f, f + c) for f, c in zip(self.layout.first_rows[docs], counts)])
        scores = maxsim_matrix(query, self._chunk_vectors(rows), self.similarity)[0]
        return np.maximum.reduceat(scores, np.cumsum(counts) - counts)

    def _check_queries(self, queries: TokenVectors) -> TokenVectors:
        if not isinstance(queries, TokenVectors):
            raise TypeError(f"queries must be TokenVectors (one text per query), got {type(queries).__name__}")
        if queries.data.shape[1] != self.dim:
            raise ValueError(
                f"query token vectors are {queries.data.shape[1]}-d; this index holds {self.dim}-d token vectors "
                "(encode the queries with the model that encoded the documents)"
            )
        return queries

    def _check_mask(self, allowed: np.ndarray) -> np.ndarray:
        mask = np.asarray(allowed)
        if mask.dtype != bool or mask.shape != (len(self),):
            raise ValueError(
                f"the filter mask must be a boolean array with one entry per chunk ({len(self)}), "
                f"got {mask.dtype} of shape {mask.shape}"
            )
        return mask

    def _candidates(self, queries: TokenVectors, searchable: np.ndarray, wanted: int) -> list[np.ndarray]:
        """Each query's candidate chunk rows (ascending): all searchable chunks when they are at most ``wanted``,
        else the FDE index's ``wanted`` best among them."""
        pool = int(searchable.sum())
        if pool <= wanted:
            everyone = np.flatnonzero(searchable)
            return [everyone if queries.lengths[q] else everyone[:0] for q in range(len(queries))]
        fdes = self.encoder.encode(queries, "query")
        restricted = not searchable.all()
        if restricted and self._index_filters:
            _, rows = self.fde_index.search(fdes, wanted, params=faiss.SearchParameters(sel=_selector(searchable)))
        else:  # oversample by the filter's selectivity, then keep the searchable hits
            fetch = min(len(self), math.ceil(wanted * len(self) / pool)) if restricted else wanted
            _, rows = self.fde_index.search(fdes, fetch)
        found = []
        for q, hits in enumerate(rows):
            hits = hits[hits >= 0]
            hits = hits[searchable[hits]][:wanted] if restricted else hits
            found.append(np.sort(hits) if queries.lengths[q] else hits[:0])
        return found

    @property
    def _index_filters(self) -> bool:
        """Whether the FDE index takes a FAISS ID selector (fast-scan and refine indexes do not)."""
        return not isinstance(self.fde_index, (faiss.IndexFastScan, faiss.IndexRefine))

    def _ranked(self, query: np.ndarray, rows: np.ndarray, top: int) -> Ranking:
        """Rescore the candidate chunk ``rows`` by MaxSim and rank their documents."""
        if not len(rows):
            return Ranking.empty()
        scores = np.full(len(self), -np.inf, dtype=np.float32)
        scores[rows] = maxsim_matrix(TokenVectors.from_list([query]), self._chunk_vectors(rows), self.similarity)[0]
        return rank_chunk_scores(scores, self.layout, (0, len(self.layout.counts)), top)

    def _chunk_vectors(self, rows: np.ndarray) -> TokenVectors:
        """The token vectors of chunk ``rows`` from the ``rescore`` source (floats read from the memory map, or
        decoded codes)."""
        token_rows, offsets = _token_rows(self.offsets, rows)
        if self.rescore == "vectors":
            data = np.asarray(self.vectors[token_rows], dtype=np.float32)
        else:
            data = decode_tokens(self.codec, self.codes[token_rows])
        return TokenVectors(data.reshape(-1, self.dim), offsets)

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder`` (the format of the module docstring), atomically."""
        with atomic_path(Path(folder), overwrite=True) as temporary:
            temporary.mkdir()
            arrays = {
                "offsets": self.offsets,
                "codes": self.codes,
                "hyperplanes": self.encoder.hyperplanes.numpy(),
                "projections": self.encoder.projections.numpy(),
            }
            if self.vectors is not None:
                arrays["vectors"] = self.vectors
            for name, array in arrays.items():
                _save_array(temporary / FILES[name], array)
            faiss.write_index(self.codec, str(temporary / FILES["codec"]))
            faiss.write_index(self.fde_index, str(temporary / FILES["fde"]))
            (temporary / FORMAT_FILE).write_text(json.dumps(self._meta(), indent=2), encoding="utf-8")

    def _meta(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "chunks": len(self),
            "tokens": self.tokens,
            "similarity": self.similarity,
            "codec": self.codec_name,
            "fde_index": self.fde_index_name,
            "fde": asdict(self.encoder.config),
            "candidates": self.candidates,
            "rescore": self.rescore,
            "vectors": self.vectors is not None,
        }

    @classmethod
    def load(
        cls, folder: str | Path, layout: DocumentLayout | None = None, rescore: str | None = None
    ) -> MultiVectorSearcher:
        """Open the index saved at ``folder`` (``save``): token codes and float vectors memory-mapped, the FAISS
        indexes read; ``rescore`` overrides the saved mode."""
        folder = Path(folder)
        if not (folder / FORMAT_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {FORMAT_FILE}; it is not a multi-vector index folder")
        meta = json.loads((folder / FORMAT_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: not a {FORMAT} folder of version {FORMAT_VERSION} ({meta}); rebuild the index")
        config = FDEConfig(**meta["fde"])
        encoder = FixedDimensionalEncoder(
            np.load(folder / FILES["hyperplanes"]), np.load(folder / FILES["projections"]), config
        )
        vectors = np.load(folder / FILES["vectors"], mmap_mode="r") if meta["vectors"] else None
        return cls(
            np.load(folder / FILES["offsets"]),
            np.load(folder / FILES["codes"], mmap_mode="r"),
            faiss.read_index(str(folder / FILES["codec"])),
            encoder,
            faiss.read_index(str(folder / FILES["fde"])),
            layout,
            vectors,
            meta["similarity"],
            meta["candidates"],
            rescore or meta["rescore"],
            (meta["codec"], meta["fde_index"]),
        )


def _save_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array))
