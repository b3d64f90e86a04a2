"""CSR, Contrastive Sparse Representation (Wen et al. 2025, "Beyond Matryoshka: revisiting sparse coding for
adaptive representation"): a k-sparse autoencoder on top of a dense embedder. A text's sparse vector is the
autoencoder's top-k latent codes; its dimensions are latent ids, not vocabulary tokens (``dimension_names``).

``SparseAutoEncoder``  equal to sentence-transformers' module of that name: same parameters (``pre_bias``,
                       ``encoder.weight`` tied to ``decoder.linear.weight``, ``latent_bias``, the
                       ``stats_last_nonzero`` buffer), same files, same codes, same training outputs.
``CSRHead``            a ``SparseHead`` over a gpte ``Embedder`` (transformer, pooling, dense, normalization) and
                       the autoencoder: ``forward`` the codes (rows, hidden_dim), ``autoencoder_outputs`` what
                       ``gpte.train.losses.sparse.CSRLoss`` reads.

On disk (sentence-transformers' CSR SparseEncoder): ``modules.json`` lists the dense modules (``Transformer`` at the
root, ``Pooling``, ``Dense``*, ``Normalize``) then ``N_SparseAutoEncoder`` (``config.json``: input_dim, hidden_dim,
k, k_aux, normalize, dead_threshold; ``model.safetensors``); ``config_sentence_transformers.json`` has
``model_type: SparseEncoder`` and ``max_active_dims`` (k by default).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from gpte.errors import ModelLoadError
from gpte.models.embedder import POOLER_WEIGHTS, Embedder, load_pooler_weights
from gpte.models.sources import resolve_model
from gpte.models.sparse.heads import SparseHead
from gpte.models.st_format import GPTE_CONFIG, read_json, st_model_config, write_json
from gpte.models.tokenization import TextTokenizer, TokenBatch, TokenizedTexts
from gpte.prompts import PromptTemplate

if TYPE_CHECKING:
    from gpte.models.sparse.encoder import SparseEncoder

AUTOENCODER_TYPE = "sentence_transformers.sparse_encoder.modules.sparse_auto_encoder.SparseAutoEncoder"
AUTOENCODER_FOLDER = "SparseAutoEncoder"
AUTOENCODER_KEYS = ("input_dim", "hidden_dim", "k", "k_aux", "normalize", "dead_threshold")
DENSE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
ST_CONFIG = "config_sentence_transformers.json"
ST_MODULE_CONFIG = "sentence_bert_config.json"
# sentence-transformers' defaults for a new autoencoder: on a SentenceTransformer model (dimension d) and on a bare
# transformer (SparseEncoder._load_converted_modules and _load_default_modules)
HIDDEN_FACTOR = 4
BARE_TRANSFORMER_K, BARE_TRANSFORMER_K_AUX = 256, 512
DEAD_THRESHOLD = 30
LAYER_NORM_EPS = 1e-5
# the keys of autoencoder_outputs, named as sentence-transformers' SparseAutoEncoder features (CSR losses read them)
OUTPUT_KEYS = (
    "sentence_embedding",
    "sentence_embedding_backbone",
    "decoded_embedding_k",
    "decoded_embedding_4k",
    "decoded_embedding_aux",
    "decoded_embedding_k_pre_bias",
)


class TiedTranspose(nn.Module):
    """The decoder: the encoder's weight, transposed (no parameter of its own; saved as ``decoder.linear.weight``)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.linear.weight.t(), None)


class SparseAutoEncoder(nn.Module):
    """sentence-transformers' k-sparse autoencoder (CSR), equal in parameters, files and outputs.

    latents = ReLU(top-k(W (x' - b_pre) + b_lat)) with x' the input (layer-normalised when ``normalize``);
    decoding W^T z + b_pre (scaled back when ``normalize``). In training mode with gradients, a latent's count of
    calls since it last fired (``stats_last_nonzero``) is kept; latents idle for more than ``dead_threshold``
    calls are dead, and the ``k_aux`` largest dead pre-activations reconstruct the residual (the auxiliary loss).

    Args:
        input_dim: dimension of the dense vectors.
        hidden_dim: number of latents (the sparse vectors' dimension).
        k: latents kept per vector.
        k_aux: dead latents kept for the auxiliary reconstruction (0: none).
        normalize: layer-normalise the input (and scale reconstructions back).
        dead_threshold: calls without firing after which a latent counts as dead.

    Raises:
        ValueError: a dimension or count out of range (``k`` in 1..hidden_dim, ``k_aux`` >= 0).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 512,
        k: int = 8,
        k_aux: int = 512,
        normalize: bool = False,
        dead_threshold: int = DEAD_THRESHOLD,
    ) -> None:
        super().__init__()
        _check_int("input_dim", input_dim, 1)
        _check_int("hidden_dim", hidden_dim, 1)
        _check_int("k", k, 1, hidden_dim)
        _check_int("k_aux", k_aux, 0)  # above hidden_dim only training fails (outputs), as in sentence-transformers
        _check_int("dead_threshold", dead_threshold, 0)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be True or False, got {normalize!r}")
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.k, self.k_aux, self.normalize, self.dead_threshold = k, k_aux, normalize, dead_threshold
        # created in sentence-transformers' order, so that one seed gives both the same initial weights
        self.pre_bias = nn.Parameter(torch.zeros(input_dim))
        self.encoder = nn.Linear(input_dim, hidden_dim, bias=False)
        self.latent_bias = nn.Parameter(torch.zeros(hidden_dim))
        self.decoder = TiedTranspose(self.encoder)
        self.stats_last_nonzero: Tensor
        self.register_buffer("stats_last_nonzero", torch.zeros(hidden_dim, dtype=torch.long))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (sentence-transformers' ``config.json``)."""
        return {key: getattr(self, key) for key in AUTOENCODER_KEYS}

    def forward(self, x: Tensor, k: int | None = None) -> dict[str, Tensor | None]:
        """sentence-transformers' forward: under ``torch.inference_mode`` only ``{"sentence_embedding": codes}``,
        else ``outputs(x, k)``; ``k`` (default the module's) is sentence-transformers' ``max_active_dims``."""
        if torch.is_inference_mode_enabled():
            return {"sentence_embedding": self.encode(x, k)}
        return self.outputs(x, k)

    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        """The codes (rows, hidden_dim): ReLU of the top-k pre-activations, the rest 0."""
        prepared, _ = self._prepare(x)
        return self._top_k(self._pre_activation(prepared), self._k(k), compute_aux=False)[0]

    def outputs(self, x: Tensor, k: int | None = None) -> dict[str, Tensor | None]:
        """Everything sentence-transformers' module writes into its features dict in training (codes, backbone
        vector, top-k / top-4k / auxiliary reconstructions, ...); updates the dead-latent counts in training mode
        with gradients, as sentence-transformers does (after the top-k, then after the top-4k selection).

        Raises:
            ValueError: 4 x k or k_aux exceeds hidden_dim (the top-4k and auxiliary reconstructions select that
                many latents; sentence-transformers fails there too).
        """
        k = self._k(k)
        if 4 * k > self.hidden_dim:
            raise ValueError(
                f"the top-4k reconstruction needs 4 x k <= hidden_dim; k={k}, hidden_dim={self.hidden_dim}"
            )
        if self.k_aux > self.hidden_dim:
            raise ValueError(
                f"the auxiliary reconstruction needs k_aux <= hidden_dim; k_aux={self.k_aux}, "
                f"hidden_dim={self.hidden_dim}"
            )
        prepared, info = self._prepare(x)
        pre_activation = self._pre_activation(prepared)
        latents_k, latents_aux = self._top_k(pre_activation, k)
        latents_4k, _ = self._top_k(pre_activation, 4 * k, compute_aux=False)
        reconstruction_k = self.decode(latents_k, info)
        reconstruction_4k = self.decode(latents_4k, info)
        reconstruction_aux = self.decoder(latents_aux) + self.pre_bias if latents_aux is not None else None
        decoder_bias = self.pre_bias
        if self.normalize:
            decoder_bias = decoder_bias * info["std"]
            if reconstruction_aux is not None:
                reconstruction_aux = reconstruction_aux * info["std"]
        return {
            "sentence_embedding": latents_k,
            "sentence_embedding_backbone": x,
            "sentence_embedding_encoded": pre_activation,
            "sentence_embedding_encoded_4k": latents_4k,
            "auxiliary_embedding": latents_aux,
            "decoded_embedding_k": reconstruction_k,
            "decoded_embedding_4k": reconstruction_4k,
            "decoded_embedding_aux": reconstruction_aux,
            "decoded_embedding_k_pre_bias": reconstruction_k - decoder_bias,
        }

    def decode(self, latents: Tensor, info: dict[str, Tensor] | None = None) -> Tensor:
        """W^T z + b_pre, scaled back to the input's mean and spread when ``normalize`` (``info`` from the input)."""
        result = self.decoder(latents) + self.pre_bias
        if self.normalize:
            if info is None:
                raise ValueError("decode needs the input's mean and spread (info) when normalize is on")
            result = result * info["std"] + info["mu"]
        return result

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.k
        _check_int("k", k, 1)
        return min(k, self.hidden_dim)

    def _prepare(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.normalize:
            return x, {}
        mu = x.mean(dim=-1, keepdim=True)
        x = x - mu
        std = x.std(dim=-1, keepdim=True)
        return x / (std + LAYER_NORM_EPS), {"mu": mu, "std": std}

    def _pre_activation(self, x: Tensor) -> Tensor:
        return F.linear(x - self.pre_bias, self.encoder.weight, self.latent_bias)

    def _top_k(self, x: Tensor, k: int, compute_aux: bool = True) -> tuple[Tensor, Tensor | None]:
        top = torch.topk(x, k=k, dim=-1)
        latents = F.relu(torch.zeros_like(x).scatter(-1, top.indices, top.values))
        if self.training and torch.is_grad_enabled():
            fired = torch.zeros_like(self.stats_last_nonzero)
            fired.scatter_add_(0, top.indices.reshape(-1), (top.values > 1e-5).to(fired.dtype).reshape(-1))
            self.stats_last_nonzero *= 1 - fired.clamp(max=1)
            self.stats_last_nonzero += 1
        if not (self.k_aux and compute_aux):
            return latents, None
        dead = x * (self.stats_last_nonzero > self.dead_threshold)
        top_aux = torch.topk(dead, k=self.k_aux)
        return latents, F.relu(torch.zeros_like(x).scatter(-1, top_aux.indices, top_aux.values))

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.config().items())


class CSRTextTokenizer(TextTokenizer):
    """The SparseEncoder's tokenizer for a CSR head: the embedder's lowercasing and padding side, its pooler's
    suffix tokens (EOS appending) and token segments (``include_prompt=False``), so that the head's pooling sees
    what the embedder's own ``encode`` (and sentence-transformers' Transformer + Pooling) would."""

    def __init__(self, embedder: Embedder, max_length: int) -> None:
        super().__init__(
            embedder.backbone.tokenizer, max_length, embedder.tokenizer.lowercase, embedder.tokenizer.padding_side
        )
        self.pooler = embedder.pooler
        self.suffix_ids = tuple(embedder.pooler.suffix_ids(embedder.backbone.tokenizer))

    def tokenize(
        self,
        texts: list[str],
        prompt: PromptTemplate | None = None,
        suffix_ids: tuple[int, ...] = (),
        with_segments: bool = False,
    ) -> TokenizedTexts:
        self.pooler.check_prompt(prompt)
        tokenized = super().tokenize(
            texts, prompt, suffix_ids or self.suffix_ids, with_segments or self.pooler.needs_segments
        )
        if tokenized.segments is not None:
            self.pooler.check_segments(tokenized.segments, prompt, texts)
        return tokenized

    def text_budget(self, prompt: PromptTemplate | None = None, suffix_ids: tuple[int, ...] = ()) -> int:
        return super().text_budget(prompt, suffix_ids or self.suffix_ids)


class CSRHead(SparseHead):
    """CSR: the embedder's vector (L2-normalised when the embedder normalizes: sentence-transformers' Normalize
    module), then the autoencoder's top-k codes.

    Args:
        embedder: the dense model (its transformer, pooling and dense steps run; its prompts are not used: the
            SparseEncoder's are).
        autoencoder: a ``SparseAutoEncoder`` whose ``input_dim`` is the embedder's dimension.
    """

    architecture = "csr"
    accepts_top_k: ClassVar[bool] = True  # forward(batch, top_k) selects top_k latents (max_active_dims)

    def __init__(self, embedder: Embedder, autoencoder: SparseAutoEncoder) -> None:
        super().__init__()
        if embedder.dimension != autoencoder.input_dim:
            raise ValueError(
                f"the autoencoder reads {autoencoder.input_dim}-dimensional vectors, the embedder makes "
                f"{embedder.dimension}-dimensional ones"
            )
        self.embedder = embedder
        self.autoencoder = autoencoder

    @property
    def needs_segments(self) -> bool:  # type: ignore[override]
        return self.embedder.pooler.needs_segments

    @property
    def vocab_size(self) -> int:
        """The number of latents (hidden_dim): the sparse vectors' dimension."""
        return self.autoencoder.hidden_dim

    @property
    def top_k(self) -> int:
        """Latents kept per vector (the autoencoder's k)."""
        return self.autoencoder.k

    def dense(self, batch: TokenBatch) -> Tensor:
        """The embedder's vectors (rows, input_dim), normalized if the embedder normalizes, in the autoencoder's
        dtype."""
        vectors = self.embedder(batch)
        if self.embedder.normalize:
            vectors = F.normalize(vectors, p=2, dim=1)
        return vectors.to(self.autoencoder.pre_bias.dtype)

    def forward(self, batch: TokenBatch, top_k: int | None = None) -> Tensor:
        """The codes (rows, hidden_dim), non-negative, at most ``top_k`` (default k) non-zero per row; in training
        mode with gradients the dead-latent counts are updated, as sentence-transformers' forward does."""
        return self.autoencoder(self.dense(batch), top_k)["sentence_embedding"]

    def autoencoder_outputs(self, batch: TokenBatch) -> dict[str, Tensor | None]:
        """What sentence-transformers' SparseAutoEncoder puts in its features dict in training, with gradients
        (``gpte.train.losses.sparse.csr.CSR_OUTPUTS`` and the rest); updates the dead-latent counts in training
        mode."""
        return self.autoencoder.outputs(self.dense(batch))

    def text_tokenizer(self, max_length: int) -> TextTokenizer:
        """The tokenizer the SparseEncoder should use for this head (``CSRTextTokenizer``)."""
        return CSRTextTokenizer(self.embedder, max_length)

    def dimension_names(self, ids: Sequence[int]) -> list[str]:
        """Names of sparse dimensions: ``latent_<id>`` (CSR dimensions are latents, not tokens)."""
        return [f"latent_{int(index)}" for index in ids]

    def settings(self) -> dict[str, Any]:
        """What shapes the vectors besides the weights (for ``info()`` and the fingerprint)."""
        return {
            **self.autoencoder.config(),
            "pooling": {"name": self.embedder.pooler.name, **self.embedder.pooler.config()},
            "dense": [step.config() for step in self.embedder.dense],
            "normalize_dense": self.embedder.normalize,
        }


# ----------------------------------------------------------------- folders


def is_csr_modules(modules: list[dict[str, Any]]) -> bool:
    """Whether a ``modules.json`` list holds a SparseAutoEncoder (a CSR model)."""
    return any(_kind(module) == "SparseAutoEncoder" for module in modules)


def read_csr(
    folder: str | Path, dtype: str | torch.dtype | None = None, trust_remote_code: bool = False
) -> tuple[CSRHead, Any, int]:
    """The CSR head, the tokenizer and the max sequence length of a sentence-transformers CSR folder (dense
    modules, then a SparseAutoEncoder), on the CPU in eval mode; the autoencoder stays float32.

    Raises:
        ModelLoadError: the folder is not a CSR model gpte reads (modules named) or a file cannot be read.
    """
    folder = Path(folder)
    modules = read_json(folder / "modules.json") or []
    kinds = [_kind(module) for module in modules]
    if not kinds or kinds[-1] != "SparseAutoEncoder" or kinds.count("SparseAutoEncoder") != 1:
        raise ModelLoadError(
            f"{folder / 'modules.json'} lists modules {kinds}; gpte reads a CSR model as dense modules "
            f"({' -> '.join(DENSE_KINDS)}) followed by one SparseAutoEncoder"
        )
    embedder = _dense_embedder(folder, modules[:-1], dtype, trust_remote_code)
    autoencoder = read_autoencoder(folder / modules[-1].get("path", ""))
    try:
        head = CSRHead(embedder, autoencoder)
    except ValueError as error:
        raise ModelLoadError(f"{folder}: {error}") from error
    return head.eval(), embedder.backbone.tokenizer, embedder.max_seq_length


def read_autoencoder(folder: str | Path) -> SparseAutoEncoder:
    """A SparseAutoEncoder folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``).

    Raises:
        ModelLoadError: a missing or bad config or weights file.
    """
    folder = Path(folder)
    config = read_json(folder / "config.json")
    if not config:
        raise ModelLoadError(f"{folder / 'config.json'}: no SparseAutoEncoder config")
    try:
        autoencoder = SparseAutoEncoder(**{key: config[key] for key in AUTOENCODER_KEYS if key in config})
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{folder / 'config.json'}: {error}") from error
    safetensors, pickled = folder / "model.safetensors", folder / "pytorch_model.bin"
    try:
        if safetensors.is_file():
            missing, unexpected = load_model(autoencoder, safetensors, strict=False)
            if missing or unexpected:
                raise RuntimeError(f"missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        elif pickled.is_file():
            autoencoder.load_state_dict(torch.load(pickled, map_location="cpu", weights_only=True))
        else:
            raise ModelLoadError(f"{folder}: no model.safetensors or pytorch_model.bin")
    except (RuntimeError, OSError) as error:
        raise ModelLoadError(f"{folder}: the SparseAutoEncoder weights do not fit its config: {error}") from error
    return autoencoder


def write_csr(model: SparseEncoder | CSRHead, folder: str | Path) -> Path:
    """Write a CSR model (a SparseEncoder with a CSR head, or the head alone) in sentence-transformers' layout
    into ``folder`` (created, or an existing empty folder): the embedder's files (``Embedder.save``: transformer
    at the root, Pooling, Dense, Normalize, ``gpte_config.json``), then ``N_SparseAutoEncoder`` and a
    ``config_sentence_transformers.json`` of a SparseEncoder (the encoder's prompts, ``max_active_dims``: its
    top_k, else k). No model card (``SparseEncoder.save`` writes one).

    Raises:
        ValueError: not a CSR model, or a query head (sentence-transformers' CSR has one route).
        FileExistsError: ``folder`` exists and is not empty.
    """
    folder = Path(folder)
    head = getattr(model, "document_head", model)
    if not isinstance(head, CSRHead):
        raise ValueError(f"write_csr writes a CSR model, got {type(head).__name__}")
    if getattr(model, "query_head", None) is not None:
        raise ValueError("write_csr writes a symmetric CSR model; this one has a query head")
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    dense = head.embedder.save(folder / ".gpte-dense")
    for item in dense.iterdir():
        if item.name != "README.md":  # the SparseEncoder's card replaces the embedder's
            item.rename(folder / item.name)
    shutil.rmtree(dense)
    max_seq_length = getattr(model, "max_seq_length", head.embedder.max_seq_length)
    for name in (ST_MODULE_CONFIG, GPTE_CONFIG):
        settings = read_json(folder / name)
        if settings:
            write_json(folder / name, settings | {"max_seq_length": max_seq_length})
    modules = read_json(folder / "modules.json")
    path = f"{len(modules)}_{AUTOENCODER_FOLDER}"
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": path, "type": AUTOENCODER_TYPE})
    write_json(folder / "modules.json", modules)
    write_autoencoder(head.autoencoder, folder / path)
    write_json(folder / ST_CONFIG, _st_config(model, head))
    return folder


def write_autoencoder(autoencoder: SparseAutoEncoder, folder: Path) -> None:
    """``config.json`` and ``model.safetensors`` as sentence-transformers writes them (the tied weight once, as
    ``decoder.linear.weight``)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", autoencoder.config())
    on_cpu = autoencoder if autoencoder.pre_bias.device.type == "cpu" else copy.deepcopy(autoencoder).cpu()
    save_model(on_cpu, str(folder / "model.safetensors"))


def csr_from_dense(
    name_or_path: str | Path | Embedder | None = None,
    hidden_dim: int | None = None,
    k: int | None = None,
    k_aux: int | None = None,
    *,
    normalize: bool = False,
    dead_threshold: int = DEAD_THRESHOLD,
    top_k: int | None = None,
    **load_options: Any,
) -> SparseEncoder:
    """A CSR SparseEncoder: a new SparseAutoEncoder (torch's default initialisation, from the current random
    state) on a gpte dense model, with sentence-transformers' defaults: hidden_dim 4 x d; on a
    sentence-transformers model or an Embedder k = d // 4 and k_aux = d // 2, on a bare transformer folder mean
    pooling, k = 256 and k_aux = 512 (d: the dense dimension). The encoder takes the embedder's tokenizer,
    prompts, max_seq_length and name.

    Args:
        name_or_path: an Embedder, or what ``Embedder.load`` takes (``load_options`` go to it: device, dtype,
            pooling, ...).
        top_k: the SparseEncoder's default pruning (None: k).

    Raises:
        ValueError: a bad size (k, k_aux or hidden_dim out of range).
    """
    from gpte.models.sparse.encoder import SparseEncoder

    if isinstance(name_or_path, Embedder):
        if load_options:
            raise ValueError(f"load options {sorted(load_options)} apply to a model loaded by name, not an Embedder")
        embedder, bare = name_or_path, False
    else:
        source = resolve_model(name_or_path, load_options.get("revision"))
        bare = source.gguf_file is None and not (source.folder / "modules.json").is_file()
        if bare:
            load_options.setdefault("pooling", "mean")
        embedder = Embedder.load(name_or_path, **load_options)
    dimension = embedder.dimension
    default_k, default_aux = (BARE_TRANSFORMER_K, BARE_TRANSFORMER_K_AUX) if bare else (dimension // 4, dimension // 2)
    autoencoder = SparseAutoEncoder(
        dimension,
        HIDDEN_FACTOR * dimension if hidden_dim is None else hidden_dim,
        default_k if k is None else k,
        default_aux if k_aux is None else k_aux,
        normalize,
        dead_threshold,
    )
    head = CSRHead(embedder, autoencoder.to(embedder.device))
    encoder = SparseEncoder(
        head, embedder.backbone.tokenizer, embedder.max_seq_length, None, embedder.prompts, top_k, 0.0, embedder.name
    )
    return encoder


# ----------------------------------------------------------------- internals


def _kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _dense_embedder(folder: Path, modules: list[dict[str, Any]], dtype: Any, trust_remote_code: bool) -> Embedder:
    """``Embedder.load`` of the dense modules only: a temporary folder whose ``modules.json`` lists them by
    absolute path (with the folder's ``gpte_config.json``), so that gpte's reading of sentence-transformers'
    modules applies unchanged."""
    with tempfile.TemporaryDirectory(prefix="gpte-csr-") as temporary:
        view = Path(temporary)
        listed = [module | {"path": str((folder / module.get("path", "")).resolve())} for module in modules]
        write_json(view / "modules.json", listed)
        if (folder / GPTE_CONFIG).is_file():
            shutil.copyfile(folder / GPTE_CONFIG, view / GPTE_CONFIG)
        embedder = Embedder.load(view, device="cpu", dtype=dtype, trust_remote_code=trust_remote_code)
    if (folder / POOLER_WEIGHTS).is_file():
        load_pooler_weights(embedder.pooler, folder)
    embedder.name = str(folder)
    return embedder


def _st_config(model: Any, head: CSRHead) -> dict[str, Any]:
    top_k = getattr(model, "top_k", None)
    max_active_dims = top_k if top_k is not None else head.autoencoder.k
    return st_model_config("SparseEncoder", getattr(model, "prompts", None), "dot", max_active_dims=max_active_dims)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer in {bounds}, got {value!r}")
