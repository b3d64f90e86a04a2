"""The keyword names sentence-transformers users type, mapped onto gpte's own ``encode`` options.

``SentenceTransformer.encode`` (sentence-transformers 5 and 6) names its options differently; a dense model's
``encode(**st_options)`` takes these names and gives the vectors of gpte's option they map to:

=======================  ============================================================================
sentence-transformers    gpte
=======================  ============================================================================
normalize_embeddings     ``normalize=True``; ``False`` keeps the model's default (as in
                         sentence-transformers, where a model's Normalize module still applies)
convert_to_tensor        ``True``: ``convert_to="torch"``; ``False``: numpy
convert_to_numpy         ``True``: numpy; ``False`` (without convert_to_tensor): a list of 1-D tensors
show_progress_bar        ``show_progress``
prompt_name              ``prompt=<a prompt name of the model>`` (an unknown name is refused)
device                   the model's device, or refused: gpte moves a model with ``model.to(device)``
=======================  ============================================================================

``prompt``, ``batch_size``, ``precision`` and ``truncate_dim`` have the same names in both. A name given both
ways must agree. ``SentenceTransformerMethods`` gives a dense model sentence-transformers' method names
(``encode_query``, ``encode_document``, ``get_embedding_dimension``, ``similarity_pairwise``, ...).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from gpte.models.backbone import resolve_device
from gpte.similarity import Array, pairwise_similarity

GPTE_ENCODE_NAMES = (
    "texts",
    "role",
    "prompt",
    "batch_size",
    "normalize",
    "truncate_dim",
    "precision",
    "convert_to",
    "show_progress",
    "task",
)
ST_ENCODE_NAMES = (
    "normalize_embeddings",
    "convert_to_tensor",
    "convert_to_numpy",
    "show_progress_bar",
    "prompt_name",
    "device",
)


@dataclass(frozen=True)
class EncodeOptions:
    """The options of one ``encode`` call in gpte's names; ``as_list``: return a list of 1-D tensors (the
    ``convert_to_numpy=False`` habit)."""

    prompt: Any
    normalize: bool | None
    convert_to: str
    show_progress: bool | None
    as_list: bool = False

    def shape(self, vectors: Any, single: bool) -> Any:
        """The call's answer from its (n, d) ``vectors``: the one row for a single text, else the matrix, or its
        rows as a list with ``as_list``."""
        if single:
            return vectors[0]
        return list(vectors) if self.as_list else vectors


def apply_st_names(
    options: EncodeOptions,
    st_options: dict[str, Any],
    prompt_names: Collection[str],
    device: torch.device,
    movable: bool = True,
) -> EncodeOptions:
    """``options`` with the sentence-transformers names of ``st_options`` applied (see the module docstring).

    Args:
        options: the call's gpte options.
        st_options: the call's other keywords.
        prompt_names: the model's prompt names (``prompt_name`` must be one).
        device: where the model runs (``device`` must resolve to it).
        movable: whether the model can be moved with ``model.to`` (said in the error).

    Raises:
        TypeError: a keyword that is neither gpte's nor a sentence-transformers name (both lists are given).
        ValueError: a name given both ways with different values, an unknown prompt name, another device.
    """
    unknown = sorted(set(st_options) - set(ST_ENCODE_NAMES))
    if unknown:
        raise TypeError(
            f"encode() got unexpected keyword argument(s) {', '.join(unknown)}; gpte's options: "
            f"{', '.join(GPTE_ENCODE_NAMES)}; sentence-transformers names also accepted: {', '.join(ST_ENCODE_NAMES)}"
        )
    if not st_options:
        return options
    _check_device(st_options.get("device"), device, movable)
    convert_to, as_list = _output(
        options.convert_to, st_options.get("convert_to_tensor"), st_options.get("convert_to_numpy")
    )
    return replace(
        options,
        prompt=_prompt(options.prompt, st_options.get("prompt_name"), prompt_names),
        normalize=_normalize(options.normalize, st_options.get("normalize_embeddings")),
        convert_to=convert_to,
        show_progress=_agree(
            "show_progress", options.show_progress, "show_progress_bar", st_options.get("show_progress_bar")
        ),
        as_list=as_list,
    )


def _agree(name: str, value: Any, st_name: str, st_value: Any) -> Any:
    """The value of an option given as ``name`` or ``st_name`` (None: not given); ValueError if both disagree."""
    if value is not None and st_value is not None and value != st_value:
        raise ValueError(f"{name}={value!r} and {st_name}={st_value!r} disagree; pass one of them")
    return st_value if value is None else value


def _normalize(normalize: bool | None, normalize_embeddings: bool | None) -> bool | None:
    """normalize_embeddings=True normalizes; False keeps the model's default, as sentence-transformers does."""
    _agree("normalize", normalize, "normalize_embeddings", normalize_embeddings)
    if normalize is not None:
        return normalize
    return True if normalize_embeddings else None


def _prompt(prompt: Any, prompt_name: str | None, prompt_names: Collection[str]) -> Any:
    """The prompt ``prompt_name`` names (it must be one of the model's); ValueError if ``prompt`` differs."""
    if prompt_name is None:
        return prompt
    if prompt is not None and prompt != prompt_name:
        raise ValueError(f"prompt={prompt!r} and prompt_name={prompt_name!r} disagree; pass one of them")
    if prompt_name not in prompt_names:
        known = ", ".join(sorted(prompt_names)) or "none (the model has no prompts)"
        raise ValueError(f"unknown prompt_name {prompt_name!r}; the model's prompts: {known}")
    return prompt_name


def _output(convert_to: str, convert_to_tensor: bool | None, convert_to_numpy: bool | None) -> tuple[str, bool]:
    """gpte's ``convert_to`` and whether to return a list of tensors, from sentence-transformers' two flags
    (convert_to_tensor wins over convert_to_numpy, as there). ``convert_to="torch"`` conflicts with flags asking
    for numpy; ``convert_to="numpy"`` is gpte's default and gives way to the flags."""
    if convert_to_tensor is None and convert_to_numpy is None:
        return convert_to, False
    if convert_to_tensor:
        wanted = "torch"
    elif convert_to_numpy is False:
        wanted = "list"
    else:
        wanted = "numpy"
    if convert_to == "torch" and wanted == "numpy":
        flags = f"convert_to_tensor={convert_to_tensor!r}, convert_to_numpy={convert_to_numpy!r}"
        raise ValueError(f"convert_to='torch' and {flags} disagree; pass one of them")
    return ("numpy", False) if wanted == "numpy" else ("torch", wanted == "list")


def _check_device(device: Any, model_device: torch.device, movable: bool) -> None:
    """ValueError unless ``device`` (None, a name or a torch device) is where the model runs; the message says how
    to move a ``movable`` model."""
    if device is None:
        return
    if isinstance(device, (list, tuple)):
        raise ValueError(
            f"device={device!r}: encoding on several devices is gpte.runtime.multiprocess.encode_multi_process"
        )
    wanted = resolve_device(device)
    if wanted.type == model_device.type and wanted.index in (None, model_device.index):
        return
    if not movable:
        raise ValueError(f"device={device!r}: this model runs on the {model_device} only")
    raise ValueError(
        f"device={device!r}: the model is on {model_device}; move it first with model.to({str(wanted)!r}) "
        f"or load it with device={str(wanted)!r}"
    )


class SentenceTransformerMethods:
    """sentence-transformers' method names on a gpte dense model (a mixin for models with ``encode``, ``dimension``
    and ``similarity_name``)."""

    def encode_query(self, texts: str | Sequence[str], **options: Any) -> Any:
        """``encode(texts, role="query", **options)``: the model's ``query`` prompt unless ``prompt`` or
        ``prompt_name`` is given (``SentenceTransformer.encode_query``)."""
        return self.encode(texts, role="query", **options)  # type: ignore[attr-defined]

    def encode_document(self, texts: str | Sequence[str], **options: Any) -> Any:
        """``encode(texts, role="document", **options)``: the model's ``document`` prompt (none if it has none)
        unless ``prompt`` or ``prompt_name`` is given (``SentenceTransformer.encode_document``: sentence-transformers
        gives every model a ``document`` prompt, empty by default, so its ``passage``/``corpus`` fallback does not
        apply either; pass ``prompt_name="passage"`` for such models)."""
        return self.encode(texts, role="document", **options)  # type: ignore[attr-defined]

    def similarity_pairwise(self, a: Array, b: Array) -> Array:
        """The (n,) similarities of row pairs ``(a[i], b[i])`` under the model's similarity function."""
        return pairwise_similarity(a, b, self.similarity_name)  # type: ignore[attr-defined]

    @property
    def similarity_fn_name(self) -> str:
        """The model's similarity function (sentence-transformers' name for ``similarity_name``)."""
        return self.similarity_name  # type: ignore[attr-defined]

    def get_embedding_dimension(self) -> int:
        """``dimension`` (sentence-transformers 6's name)."""
        return self.dimension  # type: ignore[attr-defined]

    def get_sentence_embedding_dimension(self) -> int:
        """``dimension`` (sentence-transformers' name before version 6)."""
        return self.dimension  # type: ignore[attr-defined]
