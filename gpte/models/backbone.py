"""The backbone: a Hugging Face transformer (encoder, decoder or the encoder of an encoder-decoder)
and its tokenizer, loaded from a folder or a GGUF file, returning token states.

Kinds: ``encoder`` (BERT, RoBERTa, XLM-R, MPNet, ...: bidirectional), ``decoder`` (Llama, Qwen2,
Mistral, GPT-2, ...: a causal LM family without a masked-LM head), ``encoder-decoder`` (T5 and kin:
only the encoder runs). The kind decides the default pooling and whether left padding is allowed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

from gpte.errors import ModelLoadError, extra_needed
from gpte.models.attention import AttentionMode, AttentionSwitch
from gpte.models.tokenization import TokenBatch

KINDS = ("encoder", "decoder", "encoder-decoder")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Weights a base model may define that embeddings never use, so a checkpoint may lack them.
UNUSED_WEIGHT_MARKERS = ("pooler.",)


def detect_kind(config: PretrainedConfig) -> str:
    """``encoder-decoder`` for a family with an encoder-only class in transformers (T5 -> T5EncoderModel;
    a saved encoder's config no longer says is_encoder_decoder); ``decoder`` for a causal-LM family with
    no masked-LM head; ``encoder`` otherwise."""
    if config.is_encoder_decoder or encoder_only_class(config) is not None:
        return "encoder-decoder"
    config_class = type(config)
    if config_class in MODEL_FOR_CAUSAL_LM_MAPPING and config_class not in MODEL_FOR_MASKED_LM_MAPPING:
        return "decoder"
    return "encoder"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device; None: CUDA when available, else the CPU.

    Raises:
        ValueError: a device name torch does not know.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: {error}") from None


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``/``"bfloat16"``/``"float16"`` (or the torch dtype) -> torch dtype; None -> float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")


class Backbone(nn.Module):
    """A transformer and its tokenizer.

    Args:
        model: the base model (no LM head); for encoder-decoders the encoder-only class.
        tokenizer: its tokenizer.
        kind: one of ``KINDS``.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, kind: str) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown backbone kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.kind = kind
        self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        self._attention = AttentionSwitch(model, AttentionMode())

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        gguf_file: str | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
    ) -> Backbone:
        """Load a transformer from a folder (config.json + weights) or from ``folder/gguf_file``.

        Raises:
            ModelLoadError: the folder or file is missing, or its config, weights or tokenizer cannot be read.
        """
        folder = Path(folder)
        where = folder / gguf_file if gguf_file else folder
        if not where.exists():
            raise ModelLoadError(f"model path {where} does not exist")
        options = {"trust_remote_code": trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {})}
        try:
            config = AutoConfig.from_pretrained(folder, **options)
            kind = detect_kind(config)
            model_class = encoder_only_class(config) if kind == "encoder-decoder" else AutoModel
            if model_class is None:
                raise ValueError(
                    f"{config.model_type} is an encoder-decoder with no encoder-only class in transformers"
                )
            model, info = model_class.from_pretrained(
                folder, config=config, dtype=parse_dtype(dtype), output_loading_info=True, **options
            )
            tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        except Exception as error:
            raise ModelLoadError(
                f"could not load a transformer from {where}: {type(error).__name__}: {error}"
            ) from error
        missing = [key for key in info["missing_keys"] if not any(m in key for m in UNUSED_WEIGHT_MARKERS)]
        if missing:
            raise ModelLoadError(
                f"the weights in {where} lack {len(missing)} tensors of {type(model).__name__} "
                f"(first: {missing[:3]}); the checkpoint is incomplete or of another architecture"
            )
        if gguf_file:
            _forget_gguf_quantization(model)
        return cls(model, tokenizer, kind)

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().embedding_dim)

    @property
    def num_layers(self) -> int:
        for name in ("num_hidden_layers", "num_layers", "n_layer"):
            value = getattr(self.config, name, None)
            if isinstance(value, int):
                return value
        raise ValueError(f"cannot tell how many layers {self.config.model_type} has")

    @property
    def max_positions(self) -> int | None:
        """The longest input the position embeddings allow, or None (relative positions).

        RoBERTa, XLM-R and MPNet number positions from ``padding_idx + 1``, so they hold
        ``max_position_embeddings - padding_idx - 1`` tokens (514 -> 512).
        """
        value = next(
            (
                v
                for v in (getattr(self.config, n, None) for n in ("max_position_embeddings", "n_positions"))
                if isinstance(v, int) and v > 0
            ),
            None,
        )
        position_embeddings = getattr(getattr(self.model, "embeddings", None), "position_embeddings", None)
        padding_idx = getattr(position_embeddings, "padding_idx", None)
        if value is not None and padding_idx is not None:
            value -= padding_idx + 1
        return value

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(
        self, batch: TokenBatch, all_layers: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Run the transformer; returns the last layer's states and, if ``all_layers``, every layer's."""
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.kind == "decoder" and self._takes_position_ids:
            inputs["position_ids"] = batch.position_ids
        output = self.model(**inputs, output_hidden_states=all_layers, return_dict=True)
        return output.last_hidden_state, (output.hidden_states if all_layers else None)

    @property
    def attention(self) -> AttentionMode:
        return self._attention.mode

    def set_attention(self, spec: str | dict[str, Any] | AttentionMode | None) -> None:
        """Switch a decoder between causal and bidirectional attention (see ``gpte.models.attention``).

        Raises:
            ValueError: a bad mode, a non-decoder backbone, or an unsupported architecture (supported ones named).
        """
        mode = AttentionMode.parse(spec)
        if mode.mode != "causal" and self.kind != "decoder":
            raise ValueError(
                f"attention modes apply to decoder backbones; this {self.kind} attends bidirectionally already"
            )
        previous = self._attention.mode
        self._attention.remove()
        try:
            self._attention = AttentionSwitch(self.model, mode)
        except ValueError:
            self._attention = AttentionSwitch(self.model, previous)
            raise

    def set_attention_dropout(self, probability: float) -> None:
        """Dropout on attention weights in training mode (SimCSE's noise for LLMs whose default is 0)."""
        if not isinstance(probability, (int, float)) or not 0 <= probability < 1:
            raise ValueError(f"attention dropout must be a number in [0, 1), got {probability!r}")
        changed = 0
        for module in self.model.modules():
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = float(probability)
                changed += 1
            elif isinstance(getattr(module, "attn_dropout", None), nn.Dropout):
                module.attn_dropout.p = float(probability)
                changed += 1
        if not changed:
            raise ValueError(f"{type(self.model).__name__} has no attention dropout gpte can set")

    def save(self, folder: Path) -> None:
        """Write config, safetensors weights and tokenizer files into ``folder`` (with LoRA: the adapter only)."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    def enable_activation_checkpointing(self) -> None:
        """Recompute activations in backward instead of keeping them (less memory, more compute)."""
        model = self.model
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # ----------------------------------------------------------------- LoRA (peft)

    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(
        self, r: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules: list[str] | None = None
    ) -> None:
        """Wrap the transformer with LoRA adapters (peft); only the adapters are trained afterwards.

        Args:
            r, alpha, dropout: LoRA rank, scaling numerator and dropout (peft's ``r``, ``lora_alpha``, ``lora_dropout``).
            target_modules: names (last component) of the linear layers to adapt; None lets peft pick its
                default for the architecture.

        Raises:
            ValueError: a target module that does not exist (the model's linear layer names are listed).
        """
        with extra_needed("train"):
            from peft import LoraConfig, get_peft_model

        if target_modules is not None:
            self.check_lora_targets(target_modules)
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules)
        self.model = get_peft_model(self.model, config)

    def check_lora_targets(self, target_modules: list[str]) -> None:
        """Raise ValueError if a name is not the last component of one of the model's linear layers."""
        names = {
            name.rsplit(".", 1)[-1] for name, module in self.model.named_modules() if isinstance(module, nn.Linear)
        }
        unknown = sorted(set(target_modules) - names)
        if unknown:
            raise ValueError(
                f"LoRA target module(s) {', '.join(unknown)} not found; the model's linear layers: {', '.join(sorted(names))}"
            )

    def load_adapter(self, folder: str | Path, trainable: bool = False) -> None:
        """Wrap the transformer with the LoRA adapter saved in ``folder`` (``adapter_config.json``)."""
        with extra_needed("train"):
            from peft import PeftModel

        self.model = PeftModel.from_pretrained(self.model, str(folder), is_trainable=trainable)

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights and drop the peft wrapper (vectors unchanged)."""
        if self.has_lora:
            self.model = self.model.merge_and_unload()


def encoder_only_class(config: PretrainedConfig) -> type[PreTrainedModel] | None:
    """The encoder-only class of an encoder-decoder family (T5Model -> T5EncoderModel), or None."""
    if type(config) not in AutoModel._model_mapping:
        return None
    full_name = AutoModel._model_mapping[type(config)].__name__
    return getattr(transformers, full_name.replace("Model", "EncoderModel"), None)


def _forget_gguf_quantization(model: PreTrainedModel) -> None:
    """transformers dequantizes GGUF tensors into ordinary float weights on load but keeps the GGUF
    quantizer attached, which makes ``save_pretrained`` refuse; drop that leftover metadata."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
