"""Static embeddings (model2vec-style): a token-embedding table distilled from a transformer embedder;
a text's vector is the mean of its tokens' rows, with no transformer at encode time.

Distillation (Tulkens and van Dongen, 2024, Model2Vec): every vocabulary token ``t`` is embedded by the
source model as the one-token text ``[special] t [special]`` through its own pooling and dense layers;
optionally PCA reduces the table to ``pca_dims``; optionally each row is scaled by the SIF weight
``a / (a + p(t))`` with ``p`` estimated by Zipf's law from the token's rank (its id order),
``p(rank) ∝ 1 / (rank + 1)``, ``a = sif_coefficient`` (1e-4), so frequent tokens count less.

Encoding: tokenize without special tokens, average the rows, L2-normalize if the model does. The
folder holds ``static.safetensors`` (the table), the tokenizer, and ``gpte_static.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from gpte.atomic import atomic_path
from gpte.models.fingerprint import model_fingerprint
from gpte.models.model_card import CARD_FILE, CardNotes, model_card
from gpte.models.postprocess import (
    check_encode_options,
    check_texts,
    convert,
    require_finite,
    truncate_and_normalize,
)
from gpte.models.protocol import EncodeReport, EncodeResult
from gpte.models.st_compat import EncodeOptions, SentenceTransformerMethods, apply_st_names
from gpte.models.tokenization import TokenizedTexts
from gpte.similarity import similarity

CONFIG_FILE = "gpte_static.json"
TABLE_FILE = "static.safetensors"
DISTILL_BATCH = 512


def distill_static(
    embedder: Any, pca_dims: int | None = 256, sif_coefficient: float | None = 1e-4, show_progress: bool = True
) -> StaticEmbedder:
    """Distil a ``StaticEmbedder`` from a gpte ``Embedder``.

    Args:
        embedder: the source model (its pooling may not need prompt segments).
        pca_dims: keep this many principal components (None: keep the model's dimension).
        sif_coefficient: the SIF ``a`` of the Zipf weighting (None: no weighting).

    Raises:
        ValueError: pca_dims out of range, or a pooler that needs prompt segments.
    """
    if embedder.pooler.needs_segments:
        raise ValueError(
            f"{embedder.pooler.name} pooling needs prompt segments; static distillation takes plain-token poolers"
        )
    if pca_dims is not None and not 1 <= pca_dims <= embedder.dimension:
        raise ValueError(f"pca_dims must be from 1 to the model's dimension {embedder.dimension}, got {pca_dims!r}")
    table = _token_table(embedder, show_progress)
    if pca_dims is not None and pca_dims < table.shape[1]:
        from sklearn.decomposition import PCA

        table = PCA(n_components=pca_dims, svd_solver="full", random_state=0).fit_transform(table).astype(np.float32)
    if sif_coefficient is not None:
        inverse_rank = 1 / np.arange(2, len(table) + 2)
        probability = inverse_rank / inverse_rank.sum()
        table *= (sif_coefficient / (sif_coefficient + probability)).astype(np.float32)[:, None]
    config = {
        "source": embedder.name,
        "pca_dims": pca_dims,
        "sif_coefficient": sif_coefficient,
        "normalize": embedder.normalize,
        "similarity": embedder.similarity_name,
        "lowercase": embedder.tokenizer.lowercase,
    }
    static = StaticEmbedder(table, embedder.backbone.tokenizer, config)
    static.card_notes = embedder.card_notes.derived(embedder.name, _distillation_step(pca_dims, sif_coefficient))
    return static


def _distillation_step(pca_dims: int | None, sif_coefficient: float | None) -> str:
    """The model card's sentence for a distillation with these settings."""
    reduced = f", reduced to {pca_dims} dimensions by PCA" if pca_dims is not None else ""
    weighted = f", rows weighted by SIF (a = {sif_coefficient})" if sif_coefficient is not None else ""
    return f"Distilled into a static token table (Model2Vec): each token embedded alone{reduced}{weighted}."


def _token_table(embedder: Any, show_progress: bool) -> np.ndarray:
    """Row ``t``: the source model's pooled (and projected) vector of the one-token text ``t``."""
    from tqdm.auto import tqdm

    tokenizer = embedder.backbone.tokenizer
    vocabulary = len(tokenizer)
    prefix, suffix = _special_frame(tokenizer)
    ids = [prefix + [token] + suffix for token in range(vocabulary)]
    tokenized = TokenizedTexts(ids, [False] * vocabulary)
    table = np.empty((vocabulary, embedder.dimension), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, vocabulary, DISTILL_BATCH), desc="distil", disable=not show_progress):
            rows = np.arange(start, min(start + DISTILL_BATCH, vocabulary))
            batch = embedder.tokenizer.pad(tokenized, rows).to(embedder.device)
            table[rows] = embedder(batch).float().cpu().numpy()
    return table


def _plain_backend(tokenizer: Any) -> Tokenizer | None:
    """A private copy of a fast tokenizer's Rust backend with truncation and padding off, or None for
    other tokenizers.

    ``encode_batch_fast`` on it (no character offsets) gives the ids of ``tokenizer(texts,
    add_special_tokens=False)`` without the conversion to a ``BatchEncoding``: tokenization is most of a
    static model's encode time.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def _check_no_prompt(prompt: Any, task: str | None) -> None:
    """ValueError for a prompt or task: a static model has no prompts, and ignoring one would change nothing
    silently."""
    if prompt is not None or task is not None:
        raise ValueError(
            f"a static model has no prompts; got prompt={prompt!r}, task={task!r} (pass neither; roles are accepted)"
        )


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text's own tokens ([CLS] and [SEP] for BERT)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    framed = tokenizer("x", add_special_tokens=True)["input_ids"]
    start = next(i for i in range(len(framed)) if framed[i : i + len(plain)] == plain)
    return framed[:start], framed[start + len(plain) :]


class StaticEmbedder(SentenceTransformerMethods):
    """A static embedding model: ``encode`` averages token rows.

    Args:
        table: (vocabulary, dim) float32 rows.
        tokenizer: the source model's tokenizer.
        config: ``normalize``, ``similarity``, ``lowercase`` and provenance (source, pca_dims, sif_coefficient).
    """

    backend = "static"

    def __init__(self, table: np.ndarray, tokenizer: Any, config: dict[str, Any]) -> None:
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self._weights = torch.from_numpy(self.table)
        self.tokenizer = tokenizer
        self._plain_backend = _plain_backend(tokenizer)
        self.config = config
        self.normalize = bool(config.get("normalize", False))
        self.similarity_name = config.get("similarity", "cosine")
        self.name = f"static({config.get('source', '')})"
        self.card_notes = CardNotes()  # provenance for the model card (``distill_static`` sets it)

    output_kind = "dense"
    max_seq_length = None  # a static model reads every token: no length limit, nothing truncated

    @property
    def dimension(self) -> int:
        return self.table.shape[1]

    @property
    def fingerprint(self) -> str:
        """sha256 of the table (hashed once) and the settings in ``info()``."""
        return model_fingerprint(self)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The table, as a torch module would list its weights (for fingerprints)."""
        return {"embeddings": self._weights}

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "vocabulary": len(self.table),
            "dimension": self.dimension,
            "non_finite_parameters": int((~np.isfinite(self.table)).sum()),
            **self.config,
        }

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text (the model adds no special tokens)."""
        return [len(ids) for ids in self._token_ids(self._lowercased(list(texts)))]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` (the model adds no special tokens)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(pair) for pair in encoded["offset_mapping"]]

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> None:
        """None: a static model has no token limit (``role`` is accepted; it has no prompts)."""
        _check_no_prompt(prompt, task)
        return None

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 4096,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
        **st_options: Any,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """Embed texts; see :meth:`encode_with_report`. Returns only the vectors."""
        return self.encode_with_report(
            texts,
            role,
            prompt,
            batch_size,
            normalize,
            truncate_dim,
            precision,
            convert_to,
            show_progress,
            task,
            **st_options,
        ).vectors

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 4096,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
        **st_options: Any,
    ) -> EncodeResult:
        """Vectors (n, dim), or (dim,) for one string: the mean of the text's token rows (zeros for a text
        with no tokens), truncated to ``truncate_dim`` and then L2-normalized if ``normalize`` (default: the source
        model's setting), in ``precision``, as ``Embedder.encode_with_report`` does.

        ``role`` is accepted for the dense-model protocol (static models have no prompts, so every role encodes
        alike); ``show_progress`` too (they encode too fast for a progress bar). Nothing is ever truncated.
        sentence-transformers' names are accepted as by ``Embedder.encode_with_report`` (``gpte.models.st_compat``;
        ``device`` must be the cpu, ``prompt_name`` is refused).

        Raises:
            TypeError: ``texts`` is not a string or a sequence of strings; an unknown keyword.
            ValueError: a prompt or task (static models have none), or a bad batch_size, truncate_dim, precision or
                convert_to; a sentence-transformers name that disagrees with gpte's, or a device other than the cpu.
        """
        started = time.perf_counter()
        options = apply_st_names(
            EncodeOptions(prompt, normalize, convert_to, show_progress), st_options, (), torch.device("cpu"), False
        )
        normalize, convert_to = options.normalize, options.convert_to
        text_list, single = check_texts(texts)
        check_encode_options(batch_size, truncate_dim, precision, convert_to, self.dimension)
        _check_no_prompt(prompt, task)
        vectors = np.empty((len(text_list), self.dimension), dtype=np.float32)
        for start in range(0, len(text_list), batch_size):
            vectors[start : start + batch_size] = self._mean_rows(text_list[start : start + batch_size])
        use_normalize = self.normalize if normalize is None else bool(normalize)
        pooled = truncate_and_normalize(torch.from_numpy(vectors), truncate_dim, use_normalize)
        require_finite(pooled, self.name)
        output = convert(pooled, precision, convert_to)
        report = EncodeReport(len(text_list), len(text_list), seconds=time.perf_counter() - started)
        return EncodeResult(options.shape(output, single), report)

    def _lowercased(self, texts: list[str]) -> list[str]:
        return [text.lower() for text in texts] if self.config.get("lowercase") else texts

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, without special tokens."""
        if self._plain_backend is None:
            return self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return [encoding.ids for encoding in self._plain_backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _mean_rows(self, texts: list[str]) -> np.ndarray:
        ids = self._token_ids(self._lowercased(texts))
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        flat = torch.from_numpy(np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum())))
        # embedding_bag's mean of an empty bag is zeros, the vector of a text with no tokens
        return F.embedding_bag(flat, self._weights, torch.from_numpy(offsets), mode="mean").numpy()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return similarity(a, b, self.similarity_name)

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the table, tokenizer, config and a model card (README.md); the folder appears only once complete."""
        folder = Path(folder)
        with atomic_path(folder, overwrite) as temporary:
            temporary.mkdir()
            save_file({"embeddings": self.table}, str(temporary / TABLE_FILE))
            self.tokenizer.save_pretrained(temporary)
            (temporary / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
            card = model_card(self.info(), self.card_notes, folder.name, library_name=None)
            (temporary / CARD_FILE).write_text(card, encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> StaticEmbedder:
        """Read a folder written by ``save``.

        Raises:
            FileNotFoundError: the folder lacks the table or config.
        """
        folder = Path(folder)
        for name in (TABLE_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a static model folder: {name} is missing")
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        return cls(load_file(str(folder / TABLE_FILE))["embeddings"], AutoTokenizer.from_pretrained(folder), config)
