"""The Embedder: prompt -> tokens -> backbone -> pooler -> dense -> truncate/normalize -> precision.

``Embedder.load`` reads sentence-transformers folders (same vectors as sentence-transformers), plain
Hugging Face folders, GGUF files, hub ids and the packaged default model; ``save`` writes the
sentence-transformers layout. ``encode`` tokenizes every distinct text once, runs batches of similar
token length and restores the input order, so vectors do not depend on batch size, order or padding.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from gpte.atomic import atomic_path
from gpte.errors import ModelLoadError
from gpte.models.backbone import Backbone, resolve_device
from gpte.models.backends import select_backend
from gpte.models.batching import deduplicate, length_sorted_batches
from gpte.models.dense import Dense
from gpte.models.extraction import get_extraction
from gpte.models.fingerprint import model_fingerprint
from gpte.models.model_card import CARD_FILE, CardNotes, model_card
from gpte.models.pooling import POOLERS, Pooler, TokenStates, build_pooler
from gpte.models.postprocess import (
    check_encode_options,
    check_texts,
    convert,
    non_finite_count,
    require_finite,
    truncate_and_normalize,
)
from gpte.models.protocol import EncodeReport, EncodeResult
from gpte.models.sources import resolve_model
from gpte.models.st_compat import EncodeOptions, SentenceTransformerMethods, apply_st_names
from gpte.models.st_format import ModelLayout, pooling_to_st, read_layout, write_layout
from gpte.models.tokenization import TextTokenizer, TokenBatch
from gpte.prompts import Prompt, Prompts, PromptSet, PromptTemplate
from gpte.similarity import check_similarity, similarity

DEFAULT_POOLING = {"encoder": "mean", "encoder-decoder": "mean", "decoder": "last"}
FALLBACK_MAX_LENGTH = 512
TOKENIZE_CHUNK = 65_536  # texts tokenized at a time: bounds memory on long inputs
POOLER_WEIGHTS = "gpte_pooler.safetensors"  # a trainable pooler's weights (latent attention)
PROGRESS_MIN_BATCHES = 16  # show_progress=None shows a bar from this many batches on


class Embedder(SentenceTransformerMethods, nn.Module):
    """A text embedding model.

    Args:
        backbone: transformer and tokenizer.
        pooler: the pooling step.
        dense: projections applied after pooling, in order.
        normalize: L2-normalize output vectors by default.
        prompts: named prompts and the default prompt.
        similarity: the model's similarity function (cosine, dot, euclidean, manhattan).
        max_seq_length: tokens per text, special tokens included; None takes the model's limit.
        lowercase: lowercase texts first (sentence-transformers' ``do_lower_case``).
        padding_side: ``"right"``, or ``"left"`` for decoder and encoder-decoder backbones.
        name: where the model came from, for display and provenance.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooler: Pooler,
        *,
        dense: Sequence[Dense] = (),
        normalize: bool = False,
        prompts: Prompts | None = None,
        similarity: str = "cosine",
        max_seq_length: int | None = None,
        lowercase: bool = False,
        padding_side: str = "right",
        name: str = "",
    ) -> None:
        super().__init__()
        check_similarity(similarity)
        if padding_side == "left" and backbone.kind == "encoder":
            raise ValueError(
                "padding_side='left' is supported for decoder and encoder-decoder backbones; encoders pad right"
            )
        layers = getattr(pooler, "layers", None)
        if layers is not None and layers > backbone.num_layers:
            raise ValueError(
                f"{pooler.name} pooling asks for the top {layers} layers but the model has {backbone.num_layers}"
            )
        self.backbone = backbone
        self.pooler = pooler
        self.dense = nn.ModuleList(dense)
        self.normalize = bool(normalize)
        self.prompts = prompts or Prompts()
        self.similarity_name = similarity
        self.name = name
        self.tokenizer = TextTokenizer(backbone.tokenizer, self._max_length(max_seq_length), lowercase, padding_side)
        self.backend = "torch"
        self._runner: Any = None  # None: the backbone itself (kept out of the module tree)
        self.card_notes = CardNotes()  # provenance for the model card; set by whatever makes a new model

    # ----------------------------------------------------------------- loading and saving

    @classmethod
    def load(
        cls,
        name_or_path: str | Path | None = None,
        *,
        pooling: str | dict[str, Any] | Pooler | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt: str | None = None,
        similarity: str | None = None,
        padding_side: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        backend: str = "torch",
        export_dir: str | Path | None = None,
        attention: str | dict[str, Any] | None = None,
        extraction: str | None = None,
    ) -> Embedder:
        """Load a model; keyword options override what the model folder says.

        Args:
            name_or_path: None (packaged all-MiniLM-L6-v2), a packaged name, a folder (sentence-transformers
                or plain Hugging Face), a ``.gguf`` file, or a hub id.
            pooling: a pooler name (``gpte.models.pooling.POOLERS``), ``{"name": ..., **options}``, or a Pooler.
                Default: the folder's pooling, else ``mean`` for encoders and ``last`` for decoders.
            normalize: L2-normalize outputs by default (default: the folder's Normalize module, else False).
            max_seq_length: tokens per text (default: the folder's, else the model's position limit).
            prompts, default_prompt: named prompts (``{name: template or prefix}``) and the default name;
                ``prompts`` replaces the folder's prompts.
            similarity: cosine, dot, euclidean or manhattan (default: the folder's, else cosine).
            padding_side: right (default) or left (decoders, encoder-decoders).
            device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available, else CPU.
            dtype: float32 (default), bfloat16 or float16 weights.
            revision: hub revision for hub ids.
            trust_remote_code: allow model code from the folder (transformers' option).
            backend: how the transformer runs (``gpte.models.backends.BACKENDS``): torch (float32, the
                reference), bf16, onnx, onnx-int8. See :meth:`use_backend`.
            export_dir: where ONNX files are kept (default: gpte's cache, ``$GPTE_CACHE`` or ``~/.cache/gpte``, ``onnx/<key>``).
            attention: decoders only: ``causal``, ``bidirectional`` or ``{"mode": "bidirectional", "last_layers": k}``
                (``gpte.models.attention``); default: the folder's, else causal.
            extraction: a named prompt + pooling for LLMs (``gpte.models.extraction.EXTRACTIONS``: prompteol,
                pcoteol, metaeol, echo); replaces ``pooling`` and ``prompts``, which must then be left out.

        Raises:
            ModelLoadError: the model cannot be found or read.
            ValueError: an unknown option value (the message lists the allowed ones).
            BackendUnavailableError: the backend cannot run here (the message names the extra or the fallback).
        """
        if extraction is not None:
            if pooling is not None or prompts is not None:
                raise ValueError("extraction sets the prompt and the pooling; leave pooling= and prompts= out")
            preset = get_extraction(extraction)
            pooling, prompts, default_prompt = preset.pooling, preset.prompts(), preset.name
        source = resolve_model(name_or_path, revision)
        layout = read_layout(source.folder) if source.gguf_file is None else ModelLayout(source.folder)
        backbone = Backbone.from_pretrained(layout.transformer_folder, source.gguf_file, dtype, trust_remote_code)
        backbone.set_attention(attention if attention is not None else layout.attention)
        embedder = cls(
            backbone,
            _pooler(pooling, layout.pooling, backbone),
            dense=[Dense.load(folder) for folder in layout.dense_folders],
            normalize=layout.normalize if normalize is None else normalize,
            prompts=_prompts(prompts, default_prompt, layout),
            similarity=similarity or layout.similarity or "cosine",
            max_seq_length=max_seq_length or layout.max_seq_length,
            lowercase=layout.lowercase,
            padding_side=padding_side or layout.padding_side or "right",
            name=source.name,
        )
        load_pooler_weights(embedder.pooler, source.folder)
        embedder = embedder.to(resolve_device(device))
        if backend != "torch":
            embedder.use_backend(backend, export_dir)
        return embedder

    def use_backend(self, backend: str, export_dir: str | Path | None = None) -> Embedder:
        """Run the transformer with ``backend`` from now on (see ``gpte.models.backends``); returns self.

        Args:
            export_dir: the onnx backends' folder (None: gpte's cache, ``gpte.models.onnx_backend.export_folder``;
                a folder inside an installed package or a read-only one is never written).

        Raises:
            ValueError: an unknown backend (the backends are listed).
            BackendUnavailableError: the backend cannot run here.
        """
        from gpte.models.onnx_backend import FILES, default_export_dir

        if export_dir is None and backend in FILES:
            export_dir = default_export_dir(self.backbone)
        runner = select_backend(self.backbone, backend, export_dir)
        self._runner = None if runner is self.backbone else runner
        self.backend = backend
        return self

    def with_dense(self, *steps: Dense) -> Embedder:
        """A new Embedder with ``steps`` appended to the projections (after pooling, before normalization).

        It shares this model's backbone, pooler, projections and backend (no weights are copied; training one
        trains the other's shared parts) and has its own settings; this model is left unchanged.
        """
        twin = Embedder(
            self.backbone,
            self.pooler,
            dense=[*self.dense, *steps],
            normalize=self.normalize,
            prompts=self.prompts,
            similarity=self.similarity_name,
            max_seq_length=self.max_seq_length,
            lowercase=self.tokenizer.lowercase,
            padding_side=self.tokenizer.padding_side,
            name=self.name,
        )
        twin.backend, twin._runner, twin.card_notes = self.backend, self._runner, self.card_notes
        return twin

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model in the sentence-transformers layout (loadable by gpte and sentence-transformers), with
        a model card (README.md, ``gpte.models.model_card``) from ``info()`` and ``card_notes``.

        Prompts and poolers that sentence-transformers cannot express (templates with ``{text}`` inside,
        span/multi-layer pooling, EOS appending) are kept in ``gpte_config.json``; a warning says that
        sentence-transformers will not reproduce them. The folder appears only once complete.

        Raises:
            FileExistsError: ``folder`` exists and ``overwrite`` is False.
        """
        folder = Path(folder)
        layout = self._layout()
        st_prompts = {name: t.prefix for name, t in self.prompts.templates.items() if t.prefix is not None}
        lost = [name for name in self.prompts.templates if name not in st_prompts]
        if layout.attention and layout.attention["mode"] != "causal":
            lost.append(f"attention {layout.attention}")
        if pooling_to_st(layout.pooling["name"], layout.pooling, self.backbone.hidden_size) is None:
            lost.append(f"pooling {self.pooler.name} {self.pooler.config()}")
        if lost:
            warnings.warn(f"saved for gpte; sentence-transformers will not reproduce: {', '.join(lost)}", stacklevel=2)
        with atomic_path(folder, overwrite) as temporary:
            temporary.mkdir()
            self.backbone.save(temporary)
            write_layout(temporary, layout, self.backbone.hidden_size, list(self.dense), st_prompts)
            card = model_card(self.info(), self.card_notes, folder.name, unsupported=lost)
            (temporary / CARD_FILE).write_text(card, encoding="utf-8")
            if any(True for _ in self.pooler.parameters()):
                save_file({k: v.contiguous() for k, v in self.pooler.state_dict().items()}, temporary / POOLER_WEIGHTS)
        return folder

    def _layout(self) -> ModelLayout:
        return ModelLayout(
            transformer_folder=Path(""),
            pooling={"name": self.pooler.name, **self.pooler.config()},
            normalize=self.normalize,
            max_seq_length=self.max_seq_length,
            lowercase=self.tokenizer.lowercase,
            prompts=self.prompts.to_strings(),
            default_prompt=self.prompts.default,
            similarity=self.similarity_name,
            padding_side=self.tokenizer.padding_side,
            attention=self.backbone.attention.config() if self.backbone.kind == "decoder" else None,
        )

    # ----------------------------------------------------------------- the model contract (gpte.models.protocol)

    output_kind = "dense"

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (hashed once per state of the weights) and the settings in ``info()``."""
        return model_fingerprint(self)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own: no prompt, no special tokens."""
        return self.tokenizer.count_tokens(texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own (no prompt, no special tokens)."""
        return self.tokenizer.token_offsets(text)

    def text_token_budget(
        self, role: str | None = None, prompt: str | Prompt | None = None, task: str | None = None
    ) -> int:
        """The most text tokens that fit in ``max_seq_length`` with the prompt ``encode`` would use for these
        arguments (a ``{task}`` slot left empty when no task is given), the special tokens and the pooler's suffix
        (e.g. EOS); for a prompt set, the smallest over its templates.

        Raises:
            ValueError: an unknown prompt name or role.
        """
        template = self.prompts.resolve(prompt, role)
        if template is not None:
            template = template.fill(task if task is not None or not template.needs_task else "")
        templates = template.templates if isinstance(template, PromptSet) else (template,)
        suffix = self.pooler.suffix_ids(self.backbone.tokenizer)
        return min(self.tokenizer.text_budget(one, suffix) for one in templates)

    # ----------------------------------------------------------------- properties

    @property
    def dimension(self) -> int:
        """Length of the output vectors (before ``truncate_dim``)."""
        return self.dense[-1].linear.out_features if len(self.dense) else self.backbone.hidden_size

    @property
    def max_seq_length(self) -> int:
        return self.tokenizer.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        """Set the token limit (None: the model's own); ValueError beyond the model's positions."""
        self.tokenizer.max_length = self._max_length(value)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def info(self) -> dict[str, Any]:
        """A summary: backbone, parameters, dimension, pooling, max length, prompts, similarity."""
        config = self.backbone.config
        return {
            "name": self.name,
            "backbone": type(self.backbone.model).__name__,
            "model_type": config.model_type,
            "kind": self.backbone.kind,
            "parameters": sum(p.numel() for p in self.parameters()),
            "non_finite_parameters": non_finite_count(self.parameters()),
            "layers": getattr(config, "num_hidden_layers", None),
            "hidden_size": self.backbone.hidden_size,
            "dimension": self.dimension,
            "pooling": {"name": self.pooler.name, **self.pooler.config()},
            "dense": [d.config() for d in self.dense],
            "normalize": self.normalize,
            "max_seq_length": self.max_seq_length,
            "padding_side": self.tokenizer.padding_side,
            "attention": self.backbone.attention.config() if self.backbone.kind == "decoder" else None,
            "prompts": self.prompts.to_strings(),
            "default_prompt": self.prompts.default,
            "similarity": self.similarity_name,
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "backend": self.backend,
            "device": str(self.device),
        }

    # ----------------------------------------------------------------- encoding

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: str | Prompt | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
        **st_options: Any,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """Embed texts; see :meth:`encode_with_report` for the arguments. Returns only the vectors."""
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
        prompt: str | Prompt | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
        **st_options: Any,
    ) -> EncodeResult:
        """Embed texts.

        Args:
            texts: a string (returns one vector) or a sequence of strings (returns a matrix).
            role: ``"query"``, ``"document"`` or another prompt name of the model: picks the prompt.
            prompt: a prompt name of the model, a literal template (``"...{text}..."``) or prefix, or a
                ``PromptSet`` (the vectors of its templates are averaged).
            batch_size: texts per forward pass.
            normalize: L2-normalize; None uses the model's default.
            truncate_dim: keep the first dimensions (Matryoshka); normalization happens after truncation.
            precision: float32, float16, int8, uint8 (ranges from this call's vectors), binary, ubinary.
            convert_to: ``"numpy"`` or ``"torch"`` (a CPU tensor).
            show_progress: progress bar; None shows it for long inputs.
            task: fills the prompt's ``{task}`` slot (instruction templates).
            st_options: sentence-transformers' names for these options (``gpte.models.st_compat``):
                ``normalize_embeddings`` (True: ``normalize=True``; False: the model's default),
                ``convert_to_tensor``, ``convert_to_numpy`` (False alone: a list of 1-D tensors),
                ``show_progress_bar``, ``prompt_name`` (one of the model's prompts), ``device`` (the model's own).

        Returns:
            EncodeResult: vectors (n, dim) in input order, or (dim,) for a single string, and the report.
            Texts longer than ``max_seq_length`` tokens are truncated and counted (a warning gives the count).

        Raises:
            TypeError: ``texts`` is None, not a string or sequence, or holds a non-string (index named); an
                unknown keyword (gpte's and sentence-transformers' names are listed).
            ValueError: an unknown role, precision or convert_to; a bad batch_size or truncate_dim; a
                sentence-transformers name that disagrees with gpte's, an unknown prompt_name, another device.
        """
        started = time.perf_counter()
        options = apply_st_names(
            EncodeOptions(prompt, normalize, convert_to, show_progress), st_options, self.prompts.templates, self.device
        )
        prompt, normalize, convert_to, show_progress = (
            options.prompt,
            options.normalize,
            options.convert_to,
            options.show_progress,
        )
        text_list, single = check_texts(texts)
        check_encode_options(batch_size, truncate_dim, precision, convert_to, self.dimension)
        prompt_in_use = self.resolve_prompt(prompt, role, task)
        templates = prompt_in_use.templates if isinstance(prompt_in_use, PromptSet) else (prompt_in_use,)
        for template in templates:
            self.pooler.check_prompt(template)
        unique, inverse = deduplicate(text_list)
        pooled, truncated, n_tokens = self._encode_unique(unique, templates[0], batch_size, show_progress)
        for template in templates[1:]:  # a prompt set: the mean of each template's vectors (MetaEOL)
            more, more_truncated, more_tokens = self._encode_unique(unique, template, batch_size, show_progress)
            pooled, truncated, n_tokens = pooled + more, truncated | more_truncated, n_tokens + more_tokens
        pooled /= len(templates)
        use_normalize = self.normalize if normalize is None else bool(normalize)
        vectors = truncate_and_normalize(pooled, truncate_dim, use_normalize)[torch.from_numpy(inverse)]
        require_finite(vectors, self.name)
        report = EncodeReport(len(text_list), len(unique), np.flatnonzero(truncated[inverse]).tolist(), n_tokens)
        if report.n_truncated:
            warnings.warn(
                f"{report.n_truncated} of {report.n_texts} texts were longer than {self.max_seq_length} tokens "
                "and were truncated",
                stacklevel=2,
            )
        output = convert(vectors, precision, convert_to)
        report.seconds = time.perf_counter() - started
        return EncodeResult(options.shape(output, single), report)

    def resolve_prompt(
        self, prompt: str | Prompt | None = None, role: str | None = None, task: str | None = None
    ) -> Prompt | None:
        """The template ``encode`` uses for these arguments (see :meth:`encode_with_report`), task filled in.

        Raises:
            ValueError: an unknown prompt name or role, or a task given where no prompt has a ``{task}`` slot.
        """
        template = self.prompts.resolve(prompt, role)
        if template is not None:
            return template.fill(task)
        if task is not None:
            raise ValueError(f"task={task!r} was given but no prompt is in use; name a prompt with a {{task}} slot")
        return None

    def _encode_unique(
        self, texts: list[str], template: PromptTemplate | None, batch_size: int, show_progress: bool | None
    ) -> tuple[torch.Tensor, np.ndarray, int]:
        """Pooled vectors (float32, CPU) of distinct texts, their truncation flags and the token count."""
        pooled = torch.empty((len(texts), self.dimension), dtype=torch.float32)
        truncated = np.zeros(len(texts), dtype=bool)
        n_tokens = 0
        show = len(texts) >= PROGRESS_MIN_BATCHES * batch_size if show_progress is None else show_progress
        suffix = self.pooler.suffix_ids(self.backbone.tokenizer)
        with torch.inference_mode(), tqdm(total=len(texts), unit="text", disable=not show, desc="encode") as bar:
            for start in range(0, len(texts), TOKENIZE_CHUNK):
                chunk = self.tokenizer.tokenize(
                    texts[start : start + TOKENIZE_CHUNK], template, suffix, self.pooler.needs_segments
                )
                truncated[start : start + len(chunk.truncated)] = chunk.truncated
                if chunk.segments is not None:
                    self.pooler.check_segments(chunk.segments, template, texts[start : start + TOKENIZE_CHUNK])
                lengths = [len(ids) for ids in chunk.input_ids]
                n_tokens += sum(lengths)
                for rows in length_sorted_batches(lengths, batch_size):
                    batch = self.tokenizer.pad(chunk, rows).to(self.device)
                    pooled[torch.from_numpy(rows + start)] = self(batch).float().cpu()
                    bar.update(len(rows))
        return pooled, truncated, n_tokens

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        """Token batch -> pooled (and projected) vectors (n, dimension), not normalized, on the model's device.

        Gradients flow unless called under ``torch.no_grad``/``inference_mode`` (``encode`` is).
        """
        hidden, layers = (self._runner or self.backbone)(batch, all_layers=self.pooler.needs_layers)
        return self._project(self.pooler(TokenStates(hidden, batch.attention_mask, layers, batch.segments)))

    def forward_layers(self, batch: TokenBatch, layers: Sequence[int]) -> list[torch.Tensor]:
        """Pooled (and projected) vectors taken after each of ``layers`` (1 = first transformer layer, ...,
        ``num_layers`` = last, the same as ``forward``), from one pass. Used by 2D Matryoshka training.

        Raises:
            ValueError: a layer outside 1..num_layers, or a pooler that already combines several layers.
        """
        if self.pooler.needs_layers:
            raise ValueError(
                f"{self.pooler.name} pooling combines layers itself; per-layer vectors need a single-layer pooler"
            )
        bad = [layer for layer in layers if not 1 <= layer <= self.backbone.num_layers]
        if bad:
            raise ValueError(f"layers {bad} are outside 1..{self.backbone.num_layers}")
        _, hidden_states = (self._runner or self.backbone)(batch, all_layers=True)
        return [
            self._project(self.pooler(TokenStates(hidden_states[layer], batch.attention_mask, None, batch.segments)))
            for layer in layers
        ]

    def _project(self, vectors: torch.Tensor) -> torch.Tensor:
        for dense in self.dense:
            vectors = dense(vectors)
        return vectors

    def similarity(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The (n, m) similarity matrix between vectors ``a`` and ``b`` under the model's similarity function."""
        return similarity(a, b, self.similarity_name)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        commit_message: str | None = None,
        exist_ok: bool = True,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload the model to the Hugging Face Hub as ``save`` writes it (the sentence-transformers layout and a
        model card), creating the repository (``HfApi.create_repo``, then ``HfApi.upload_folder``), as
        ``SentenceTransformer.push_to_hub`` does.

        Args:
            repo_id: ``"user/name"`` (or ``"name"`` for the token's user).
            token: a Hub token (default: huggingface_hub's login).
            private: make a new repository private (default: the Hub's default).
            commit_message: default ``"Upload gpte model <name>"``.
            exist_ok: upload to an existing repository (sentence-transformers' default is False).
            revision: the branch to push to (created if missing).
            create_pr: open a pull request instead of committing to the branch.

        Returns:
            The commit's URL (the pull request's with ``create_pr``).
        """
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=exist_ok or create_pr).repo_id
        if revision is not None:
            api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory() as temporary:
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=self.save(Path(temporary) / repo_id.rpartition("/")[2]),
                commit_message=commit_message or f"Upload gpte model {self.name}",
                revision=revision,
                create_pr=create_pr,
            )
        return commit.pr_url if create_pr else commit.commit_url

    def _max_length(self, requested: int | None) -> int:
        """The requested length if the model allows it; else the model's own limit."""
        limits = [self.backbone.max_positions, _tokenizer_limit(self.backbone.tokenizer)]
        limit = min((value for value in limits if value), default=None)
        if requested is None:
            return limit or FALLBACK_MAX_LENGTH
        if not isinstance(requested, int) or requested < 1:
            raise ValueError(f"max_seq_length must be a positive integer, got {requested!r}")
        if self.backbone.max_positions and requested > self.backbone.max_positions:
            raise ValueError(f"max_seq_length {requested} exceeds the model's {self.backbone.max_positions} positions")
        return requested

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dimension={self.dimension}, max_seq_length={self.max_seq_length}, normalize={self.normalize}"


def _pooler(requested: str | dict | Pooler | None, saved: dict | None, backbone: Backbone) -> Pooler:
    spec = requested if requested is not None else saved or DEFAULT_POOLING[backbone.kind]
    if isinstance(spec, Pooler):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not (isinstance(spec, dict) and "name" in spec):
        raise TypeError(f"pooling must be a pooler name, a dict with a 'name' key, or a Pooler; got {spec!r}")
    options = dict(spec)
    name = options.pop("name")
    if name in POOLERS and POOLERS[name].needs_dimension:
        options.setdefault("dimension", backbone.hidden_size)
    return build_pooler(name, **options)


def load_pooler_weights(pooler: Pooler, folder: Path) -> None:
    """Load a trainable pooler's weights from ``folder/POOLER_WEIGHTS`` if the pooler has any and the file exists.

    Raises:
        ModelLoadError: the file does not fit the pooler (another size or pooling).
    """
    path = Path(folder) / POOLER_WEIGHTS
    if not path.is_file() or not any(True for _ in pooler.parameters()):
        return
    try:
        pooler.load_state_dict(load_file(path))
    except RuntimeError as error:
        raise ModelLoadError(f"{path} does not fit the {pooler.name} pooler {pooler.config()}: {error}") from error


def _prompts(requested: dict[str, str] | None, default: str | None, layout: ModelLayout) -> Prompts:
    """The caller's prompts replace the folder's; the default name applies to whichever set is used."""
    if requested is None:
        return Prompts.from_strings(layout.prompts, default or layout.default_prompt)
    return Prompts.from_strings(requested, default)


def _tokenizer_limit(tokenizer: Any) -> int | None:
    """The tokenizer's model_max_length unless it is transformers' 'no limit' sentinel."""
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and value < 1_000_000 else None
