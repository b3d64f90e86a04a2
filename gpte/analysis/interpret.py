"""Reading single embeddings and single similarities.

- ``lm_head_tokens``: a decoder embedder's vector lives in its LM's hidden space, so the LM head maps it to
  vocabulary logits, logits = W_out h; the top tokens say what the vector "is about" (the view behind
  PromptEOL-style one-word prompts and logit-lens readings).
- ``explain_similarity``: for any embedder, why c(a, b) is what it is: each word's share (the similarity
  drop when that word is deleted, occlusion) and, given a reference corpus, the nearest neighbours of a and
  of b and those they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gpte.models.embedder import Embedder


@dataclass
class Explanation:
    """Similarity of (a, b) and what drives it.

    Attributes:
        similarity: the model's similarity of a and b.
        words_a, words_b: (word, similarity drop when that word is deleted), largest drop first.
        neighbours_a, neighbours_b: (corpus text, similarity) nearest to a, to b (empty without a corpus).
        shared_neighbours: corpus texts among both neighbour lists.
    """

    similarity: float
    words_a: list[tuple[str, float]]
    words_b: list[tuple[str, float]]
    neighbours_a: list[tuple[str, float]] = field(default_factory=list)
    neighbours_b: list[tuple[str, float]] = field(default_factory=list)
    shared_neighbours: list[str] = field(default_factory=list)


def lm_head_tokens(
    embedder: Embedder, texts: Sequence[str], k: int = 10, output_embeddings: torch.Tensor | None = None
) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable tokens (token, probability) of each text's embedding through the LM head.

    Args:
        embedder: a decoder embedder whose vectors are hidden states (no Dense projection after pooling).
        output_embeddings: the LM head's (vocab, hidden) weight; None uses the input embeddings of a model
            that ties them (most small LLMs). For an untied model pass
            ``load_causal_lm(path)[1].get_output_embeddings().weight``.

    Raises:
        ValueError: not a decoder, a projection after pooling, an untied model without output_embeddings,
            or k < 1.
    """
    if embedder.backbone.kind != "decoder":
        raise ValueError(f"lm_head_tokens reads decoder LLM embedders; this model is an {embedder.backbone.kind}")
    if len(embedder.dense):
        raise ValueError(
            "the model projects its vectors after pooling (Dense), so they are not in the LM's hidden space"
        )
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if output_embeddings is None:
        if not getattr(embedder.backbone.config, "tie_word_embeddings", False):
            raise ValueError(
                "this model does not tie its LM head to its input embeddings; pass output_embeddings= "
                "(load_causal_lm(path)[1].get_output_embeddings().weight)"
            )
        output_embeddings = embedder.backbone.model.get_input_embeddings().weight
    vectors = torch.as_tensor(embedder.encode(list(texts), normalize=False))
    with torch.no_grad():
        probabilities = torch.softmax(vectors @ output_embeddings.detach().float().cpu().T, dim=-1)
    top = probabilities.topk(k, dim=-1)
    tokenizer = embedder.backbone.tokenizer
    return [
        [(tokenizer.decode([token]), float(p)) for token, p in zip(ids.tolist(), values.tolist())]
        for ids, values in zip(top.indices, top.values)
    ]


def explain_similarity(embedder, a: str, b: str, corpus: Sequence[str] | None = None, k: int = 5) -> Explanation:
    """Word occlusion on both texts and (with ``corpus``) the ``k`` nearest corpus texts of each.

    Args:
        embedder: any object with ``encode(texts)`` and ``similarity(x, y)`` (gpte's Embedder).

    Raises:
        ValueError: an empty text or k < 1.
    """
    if not a.split() or not b.split():
        raise ValueError("both texts need at least one word")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    pair = np.asarray(embedder.encode([a, b]))
    score = float(np.asarray(embedder.similarity(pair[:1], pair[1:]))[0, 0])
    explanation = Explanation(score, _occlusion(embedder, a, pair[1:], score), _occlusion(embedder, b, pair[:1], score))
    if corpus:
        documents = list(corpus)
        similarities = np.asarray(embedder.similarity(pair, np.asarray(embedder.encode(documents))))
        nearest = np.argsort(-similarities, axis=1)[:, :k]
        explanation.neighbours_a = [(documents[i], float(similarities[0, i])) for i in nearest[0]]
        explanation.neighbours_b = [(documents[i], float(similarities[1, i])) for i in nearest[1]]
        explanation.shared_neighbours = [documents[i] for i in nearest[0] if i in set(nearest[1].tolist())]
    return explanation


def _occlusion(embedder, text: str, other: np.ndarray, score: float) -> list[tuple[str, float]]:
    """(word, score - similarity(text without that word, other)), largest drop first."""
    words = text.split()
    if len(words) == 1:
        return [(words[0], score)]
    variants = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    similarities = np.asarray(embedder.similarity(np.asarray(embedder.encode(variants)), other))[:, 0]
    drops = [(word, score - float(value)) for word, value in zip(words, similarities)]
    return sorted(drops, key=lambda item: -item[1])
