"""The pair-scoring model kind: a cross-encoder reads ``[CLS] query [SEP] text [SEP]`` jointly and a classification
head gives one relevance logit (``gpte.models.protocol.PairScorer``).

Folders: sentence-transformers' CrossEncoder layout (v6: ``modules.json`` with the transformer at the root,
``config_sentence_transformers.json`` with ``activation_fn``, ``prompts``, ``default_prompt_name``; v4/v5:
``config.json``'s ``sentence_transformers.activation_fn``; older: ``sbert_ce_default_activation_function``) and plain
``AutoModelForSequenceClassification`` folders. Scores equal sentence-transformers' ``CrossEncoder.predict`` on the
same folder: the same activation (sigmoid for one label unless the folder names another ``torch.`` activation), the
same maximum length (the tokenizer's ``model_max_length`` capped by the position table) and prompts put before the
query.

One deliberate difference: a pair longer than ``max_seq_length`` loses the end of its text, never its query
(sentence-transformers cuts ``longest_first``, which shortens a long query as well); a query that alone leaves fewer
than ``MIN_TEXT_TOKENS`` for the text falls back to ``longest_first``. Truncated pairs are reported. Inference plans
batches like the ``Embedder``: each distinct pair once, batches of similar token length (``gpte.models.batching``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from gpte._version import __version__
from gpte.atomic import atomic_path
from gpte.errors import ModelLoadError
from gpte.models.backbone import parse_dtype, resolve_device
from gpte.models.batching import check_batch_size, deduplicate, length_sorted_batches
from gpte.models.fingerprint import model_fingerprint
from gpte.models.model_card import CARD_FILE, CardNotes, model_card
from gpte.models.protocol import EncodeReport, ScoreResult, ranking
from gpte.models.sources import resolve_model
from gpte.models.st_format import read_json, write_json
from gpte.models.tokenization import tokenizer_limit

ST_CONFIG = "config_sentence_transformers.json"
ST_MODULE_CONFIG = "sentence_bert_config.json"
MIN_TEXT_TOKENS = 8  # a query leaving fewer text tokens than this is cut as well (longest_first)
TOKENIZE_CHUNK = 4096
PROGRESS_MIN_BATCHES = 8


class CrossEncoder(nn.Module):
    """A sequence-classification transformer scoring (query, text) pairs.

    Args:
        model: the ``AutoModelForSequenceClassification`` (its ``num_labels`` outputs per pair).
        tokenizer: its fast tokenizer.
        max_seq_length: tokens per pair, special tokens included.
        activation: applied to the logits by ``predict`` unless ``activation=False`` (sentence-transformers'
            ``activation_fn``).
        prompts, default_prompt: named instructions put before the query, and the name used when none is given.
        name: where the model came from.
    """

    output_kind = "pair_score"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        max_seq_length: int,
        activation: nn.Module,
        prompts: dict[str, str] | None = None,
        default_prompt: str | None = None,
        name: str = "cross-encoder",
    ) -> None:
        super().__init__()
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{type(tokenizer).__name__} is a slow tokenizer; a cross-encoder needs a fast one")
        self.model = model
        self.tokenizer = tokenizer
        self.activation = activation
        self.prompts = dict(prompts or {})
        if default_prompt is not None and default_prompt not in self.prompts:
            raise ValueError(f"default_prompt {default_prompt!r} is not one of the prompts {sorted(self.prompts)}")
        self.default_prompt = default_prompt
        self.name = name
        self.card_notes = CardNotes()
        self._max_seq_length = _check_length(max_seq_length, self._position_limit())
        self.pair_specials = tokenizer.num_special_tokens_to_add(pair=True)

    # ----------------------------------------------------------------- loading and saving

    @classmethod
    def load(
        cls,
        name_or_path: str | Path | None = None,
        *,
        num_labels: int | None = None,
        max_seq_length: int | None = None,
        activation: str | nn.Module | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
    ) -> CrossEncoder:
        """Load a cross-encoder folder (sentence-transformers or plain Hugging Face) or hub id (None: the packaged
        default encoder, all-MiniLM-L6-v2, with a new head).

        A folder holding only an encoder (e.g. a sentence-transformers bi-encoder such as all-MiniLM-L6-v2) loads
        with a new, randomly initialised classification head of ``num_labels`` outputs: the start of training.

        Args:
            num_labels: outputs of the head (default: the folder's, else 1).
            max_seq_length: tokens per pair (default: the tokenizer's limit capped by the position table).
            activation: ``sigmoid``, ``identity`` or a ``torch.`` dotted path / module (default: the folder's, else
                sigmoid for one label and identity for several).
            prompts, default_prompt: replace the folder's prompts.
            device, dtype: where and how the weights are held (float32 default).

        Raises:
            ModelLoadError: the folder cannot be read as a sequence-classification model.
        """
        source = resolve_model(name_or_path, revision)
        if source.gguf_file is not None:
            raise ModelLoadError(f"{name_or_path} is a GGUF LLM; load it as an LLM reranker (gpte.models.llm_reranker)")
        folder = source.folder
        settings = read_st_settings(folder)
        # a different number of labels than the folder's gets a new head
        options = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels is not None else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, dtype=parse_dtype(dtype), **options
            ).eval()
        except Exception as error:
            raise ModelLoadError(
                f"could not load a cross-encoder from {folder}: {type(error).__name__}: {error}"
            ) from error
        limit = max_seq_length or tokenizer_limit(tokenizer, model)
        n_labels = model.config.num_labels
        chosen = activation if activation is not None else settings["activation"]
        encoder = cls(
            model,
            tokenizer,
            limit,
            build_activation(chosen, n_labels),
            prompts if prompts is not None else settings["prompts"],
            default_prompt if default_prompt is not None or prompts is not None else settings["default_prompt"],
            source.name,
        )
        return encoder.to(resolve_device(device))

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model in sentence-transformers 6's CrossEncoder layout (loadable by gpte and
        sentence-transformers) with a model card; the folder appears only once complete.

        Raises:
            FileExistsError: ``folder`` exists and ``overwrite`` is False.
        """
        folder = Path(folder)
        with atomic_path(folder, overwrite) as temporary:
            temporary.mkdir()
            self.model.save_pretrained(temporary)
            self.tokenizer.model_max_length = self.max_seq_length
            self.tokenizer.save_pretrained(temporary)
            write_json(temporary / "modules.json", [_TRANSFORMER_MODULE])
            write_json(temporary / ST_MODULE_CONFIG, _ST_MODULE_SETTINGS)
            write_json(temporary / ST_CONFIG, self._st_config())
            card = model_card(self.info(), self.card_notes, folder.name)
            (temporary / CARD_FILE).write_text(card, encoding="utf-8")
        return folder

    def _st_config(self) -> dict[str, Any]:
        return {
            "__version__": {"gpte": __version__, "pytorch": torch.__version__},
            "activation_fn": activation_path(self.activation),
            "default_prompt_name": self.default_prompt,
            "model_type": "CrossEncoder",
            "prompts": self.prompts,
        }

    # ----------------------------------------------------------------- the model contract

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (hashed once per state of the weights) and the settings in ``info()``."""
        return model_fingerprint(self)

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._max_seq_length = _check_length(value, self._position_limit())

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own: no prompt, no special tokens."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(pair) for pair in encoded["offset_mapping"]]

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int:
        """Tokens the query and the text of one pair may hold together (``max_seq_length`` less the pair's special
        tokens and the prompt's tokens)."""
        instruction = self._instruction(prompt)
        used = self.pair_specials + (self.count_tokens([instruction])[0] if instruction else 0)
        return max(0, self.max_seq_length - used)

    def info(self) -> dict[str, Any]:
        """The model's name, kind and every setting that shapes its scores."""
        return {
            "name": self.name,
            "kind": self.output_kind,
            "architecture": type(self.model).__name__,
            "num_labels": self.num_labels,
            "activation": activation_path(self.activation),
            "max_seq_length": self.max_seq_length,
            "prompts": self.prompts,
            "default_prompt": self.default_prompt,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
            "backend": "torch",
        }

    # ----------------------------------------------------------------- scoring

    def predict(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """Scores of ``pairs`` in order: (n,) float32 for one label, (n, num_labels) for several.

        Args:
            pairs: (query, text) pairs.
            activation: apply the model's activation (sentence-transformers' default); False: raw logits.
            prompt: an instruction put before each query; ``prompt_name`` names one of the model's prompts instead
                (default: the model's default prompt, if any).
        """
        return self.predict_with_report(pairs, batch_size, activation, prompt, show_progress, prompt_name).scores

    def predict_with_report(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
        prompt_name: str | None = None,
    ) -> ScoreResult:
        """``predict``'s scores and an ``EncodeReport`` (pairs, distinct pairs, truncated positions, tokens)."""
        started = time.perf_counter()
        queries, texts = check_pairs(pairs)
        check_batch_size(batch_size)
        instruction = self._instruction(prompt, prompt_name)
        unique, inverse = deduplicate(list(zip(queries, texts)))
        logits, truncated, n_tokens = self._score_unique(unique, instruction, batch_size, show_progress)
        scores = self.activation(logits) if activation else logits
        scores = scores.squeeze(-1) if self.num_labels == 1 else scores
        report = EncodeReport(
            n_texts=len(queries),
            n_unique=len(unique),
            truncated_indices=np.flatnonzero(truncated[inverse]).tolist(),
            n_tokens=n_tokens,
            seconds=time.perf_counter() - started,
        )
        return ScoreResult(scores.numpy()[inverse].astype(np.float32, copy=False), report)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores (len(texts),) of ``(query, text)`` for each text (search's ``Reranker`` protocol)."""
        self._require_one_label("score")
        return self.predict([(query, text) for text in texts], show_progress=False)

    def rank(
        self, query: str, texts: Sequence[str], top_k: int | None = None, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """``[{"corpus_id", "score"}]`` best first (ties keep input order), the first ``top_k`` (None: all)."""
        self._require_one_label("rank")
        scores = self.predict([(query, text) for text in texts], batch_size=batch_size, show_progress=False)
        return ranking(scores, top_k)

    def forward_pairs(self, queries: Sequence[str], texts: Sequence[str], prompt: str | None = None) -> torch.Tensor:
        """Raw logits (n,) for one label, else (n, num_labels), of the pairs on the model's device, with gradients
        unless called under ``torch.no_grad`` (training losses call this)."""
        instruction = self._instruction(prompt)
        input_ids, token_types, _ = self.tokenize_pairs(list(queries), list(texts), instruction)
        logits = self(_pad(input_ids, token_types, self._pad_id(), range(len(input_ids)), self.device))
        return logits.squeeze(-1) if self.num_labels == 1 else logits

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Padded token batch -> logits (n, num_labels) as float32."""
        if "token_type_ids" in features and self.model.config.type_vocab_size < 2:
            features = {key: value for key, value in features.items() if key != "token_type_ids"}
        return self.model(**features).logits.float()

    # ----------------------------------------------------------------- tokens

    def tokenize_pairs(
        self, queries: list[str], texts: list[str], instruction: str | None = None
    ) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
        """Token ids and token types of each pair within ``max_seq_length``, and which pairs were cut.

        The text is cut (``only_second``) unless the query leaves it fewer than ``MIN_TEXT_TOKENS`` tokens; then
        both are cut, the longer first (``longest_first``).
        """
        queries = [instruction + query for query in queries] if instruction else queries
        query_lengths = self.count_tokens(queries)
        text_lengths = self.count_tokens(texts)
        room = self.max_seq_length - self.pair_specials
        truncated = np.array([q + t > room for q, t in zip(query_lengths, text_lengths)], dtype=bool)
        long_query = [room - q < MIN_TEXT_TOKENS for q in query_lengths]
        input_ids: list[list[int]] = [[] for _ in queries]
        token_types: list[list[int]] = [[] for _ in queries]
        for strategy, rows in (("only_second", _where(long_query, False)), ("longest_first", _where(long_query, True))):
            if not rows:
                continue
            encoded = self.tokenizer(
                [queries[i] for i in rows],
                [texts[i] for i in rows],
                truncation=strategy,
                max_length=self.max_seq_length,
                return_attention_mask=False,
                return_token_type_ids=True,
            )
            for position, row in enumerate(rows):
                input_ids[row] = encoded["input_ids"][position]
                token_types[row] = encoded["token_type_ids"][position]
        return input_ids, token_types, truncated

    # ----------------------------------------------------------------- internals

    def _score_unique(
        self, pairs: list[tuple[str, str]], instruction: str | None, batch_size: int, show_progress: bool | None
    ) -> tuple[torch.Tensor, np.ndarray, int]:
        """Raw logits (n, num_labels) float32 on CPU of distinct pairs, their truncation flags and the token count."""
        logits = torch.empty((len(pairs), self.num_labels), dtype=torch.float32)
        truncated = np.zeros(len(pairs), dtype=bool)
        n_tokens = 0
        show = len(pairs) >= PROGRESS_MIN_BATCHES * batch_size if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(pairs), unit="pair", disable=not show, desc="score") as bar:
            for start in range(0, len(pairs), TOKENIZE_CHUNK):
                chunk = pairs[start : start + TOKENIZE_CHUNK]
                input_ids, token_types, cut = self.tokenize_pairs(
                    [q for q, _ in chunk], [t for _, t in chunk], instruction
                )
                truncated[start : start + len(chunk)] = cut
                lengths = [len(ids) for ids in input_ids]
                n_tokens += sum(lengths)
                for rows in length_sorted_batches(lengths, batch_size):
                    batch = _pad(input_ids, token_types, self._pad_id(), rows, self.device)
                    logits[torch.from_numpy(rows + start)] = self(batch).cpu()
                    bar.update(len(rows))
        return logits, truncated, n_tokens

    def _instruction(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The text put before each query: ``prompt``, the named prompt, else the default prompt's."""
        if prompt is not None and prompt_name is not None:
            raise ValueError("give prompt= (a text) or prompt_name= (one of the model's prompts), not both")
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ValueError(f"prompt must be a text, got {type(prompt).__name__}")
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt
        if name is None:
            return None
        if name not in self.prompts:
            raise ValueError(f"unknown prompt name {name!r}; the model's prompts: {sorted(self.prompts) or 'none'}")
        return self.prompts[name] or None

    def _require_one_label(self, what: str) -> None:
        if self.num_labels != 1:
            raise ValueError(
                f"{what} needs a one-label cross-encoder (a relevance score); this one has {self.num_labels} labels: "
                "use predict() for class scores"
            )

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _position_limit(self) -> int | None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_labels={self.num_labels}, max_seq_length={self.max_seq_length}"


_TRANSFORMER_MODULE = {
    "idx": 0,
    "name": "0",
    "path": "",
    "type": "sentence_transformers.base.modules.transformer.Transformer",
}
_ST_MODULE_SETTINGS = {
    "transformer_task": "sequence-classification",
    "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
    "module_output_name": "scores",
}
ACTIVATIONS = {"sigmoid": "torch.nn.modules.activation.Sigmoid", "identity": "torch.nn.modules.linear.Identity"}


def read_st_settings(folder: Path) -> dict[str, Any]:
    """The activation path, prompts and default prompt a folder's sentence-transformers files name (v6, v4/v5 or
    older layouts); None/empty where they name none."""
    settings: dict[str, Any] = {"activation": None, "prompts": {}, "default_prompt": None}
    config = read_json(folder / "config.json") or {}
    st_config = read_json(folder / ST_CONFIG) or {}
    settings["activation"] = (
        st_config.get("activation_fn")
        or (config.get("sentence_transformers") or {}).get("activation_fn")
        or config.get("sbert_ce_default_activation_function")
    )
    if st_config.get("model_type") == "CrossEncoder":
        settings["prompts"] = st_config.get("prompts") or {}
        settings["default_prompt"] = st_config.get("default_prompt_name")
    return settings


def is_cross_encoder_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a cross-encoder: sentence-transformers' CrossEncoder layout, or a Hugging Face
    config whose architecture is a ``...ForSequenceClassification``."""
    folder = Path(folder)
    st_config = read_json(folder / ST_CONFIG) or {}
    if st_config.get("model_type") == "CrossEncoder":
        return True
    architectures = (read_json(folder / "config.json") or {}).get("architectures") or []
    return any(str(name).endswith("ForSequenceClassification") for name in architectures)


def build_activation(spec: str | nn.Module | None, num_labels: int) -> nn.Module:
    """An activation module from a name (``ACTIVATIONS``), a ``torch.`` dotted path, or a module; None: sigmoid for
    one label, identity for several (sentence-transformers' default). Paths outside ``torch.`` are refused, as
    sentence-transformers refuses them without ``trust_remote_code``."""
    if isinstance(spec, nn.Module):
        return spec
    if spec is None:
        return nn.Sigmoid() if num_labels == 1 else nn.Identity()
    path = ACTIVATIONS.get(spec, spec)
    if not isinstance(path, str) or not path.startswith("torch."):
        raise ValueError(f"unknown activation {spec!r}; choose one of {', '.join(ACTIVATIONS)} or a torch. dotted path")
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError, TypeError) as error:
        raise ValueError(f"activation {spec!r} cannot be built: {error}") from error


def activation_path(activation: nn.Module) -> str:
    """The dotted class path sentence-transformers stores for an activation module."""
    return f"{type(activation).__module__}.{type(activation).__qualname__}"


def check_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Queries and texts of ``pairs``; ValueError naming the first pair that is not two texts."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise ValueError(f"pairs must be a list of (query, text) pairs, got {type(pairs).__name__}")
    queries, texts = [], []
    for number, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"pair {number} is not a (query, text) pair: {pair!r:.80}")
        if not all(isinstance(part, str) for part in pair):
            raise ValueError(
                f"pair {number} must hold two texts, got {type(pair[0]).__name__}, {type(pair[1]).__name__}"
            )
        queries.append(pair[0])
        texts.append(pair[1])
    return queries, texts


def _pad(
    input_ids: list[list[int]], token_types: list[list[int]], pad_id: int, rows: Any, device: torch.device
) -> dict[str, torch.Tensor]:
    """The pairs at ``rows`` right-padded to their longest length, as model inputs on ``device``."""
    rows = list(rows)
    width = max(len(input_ids[i]) for i in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        length = len(input_ids[i])
        ids[r, :length], types[r, :length], mask[r, :length] = input_ids[i], token_types[i], 1
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "token_type_ids": torch.from_numpy(types).to(device),
    }


def _where(flags: list[bool], value: bool) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag == value]


def _check_length(value: int, limit: int | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_seq_length must be a positive integer, got {value!r}")
    if limit is not None and value > limit:
        raise ValueError(f"max_seq_length {value} exceeds the model's {limit} positions")
    return value
