"""Training a sparse model: a SPLADE recipe (splade loss around in-batch InfoNCE, FLOPS regularisers warmed up)
learns, its folder loads in sentence-transformers' SparseEncoder with equal vectors, the regulariser weights follow
the trainer's steps, an inference-free model trains its query weights, and bad recipes fail before training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder

from gpte.data.training import read_training_data
from gpte.models.sparse import SparseEncoder, load_sparse_encoder
from gpte.models.sparse.heads import StaticQueryHead
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.trainer import train

PAIRS = [
    ("wing stall", "a stall happens when the wing exceeds the critical angle of attack"),
    ("heat transfer", "heat flows through the plate by conduction"),
    ("supersonic flow", "shock waves form in supersonic flow over the body"),
    ("boundary layer", "the boundary layer thickens along the flat plate"),
]
TEXTS = [text for pair in PAIRS for text in pair]


def write_pairs(folder, repeat: int = 4):
    rows = [{"query": query, "positive": text} for query, text in PAIRS] * repeat
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def in_batch_accuracy(model: SparseEncoder) -> float:
    queries = model.encode([q for q, _ in PAIRS], role="query")
    documents = model.encode([t for _, t in PAIRS], role="document")
    return float((model.similarity(queries, documents).argmax(axis=1) == np.arange(len(PAIRS))).mean())


def test_a_splade_recipe_learns_and_its_folder_equals_sentence_transformers(tiny_models, tmp_path):
    from gpte.train.recipe import load_recipe, run_recipe

    write_pairs(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"kind: sparse\nmodel: {tiny_models['bert-mlm']}\noutput: runs\nstages:\n"
        "  - name: splade\n"
        "    data: [{path: pairs.jsonl, columns: [query, positive]}]\n"
        "    loss: {name: splade, document_regularizer_weight: 1.0e-3, query_regularizer_weight: 1.0e-3}\n"
        "    training: {epochs: 4, batch_size: 4, learning_rate: 0.002, warmup_ratio: 0}\n",
        encoding="utf-8",
    )
    untrained = load_sparse_encoder(tiny_models["bert-mlm"])
    (folder,) = run_recipe(load_recipe(recipe))
    trained = load_sparse_encoder(folder)
    assert in_batch_accuracy(trained) > in_batch_accuracy(untrained)
    peer = STSparseEncoder(str(folder), device="cpu")
    for role, encode in (("query", peer.encode_query), ("document", peer.encode_document)):
        expected = encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
        np.testing.assert_allclose(trained.encode(TEXTS, role=role).toarray(), expected, atol=1e-5)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "splade" in card.lower()


def test_the_regulariser_weights_follow_the_trainers_steps(splade, tmp_path, monkeypatch):
    data = read_training_data(write_pairs(tmp_path, repeat=2), columns=["query", "positive"])
    loss = build_loss({"name": "splade", "document_regularizer_weight": 1.0, "warmup_ratio": 0.5}, splade)
    seen = []
    original = type(loss).set_progress
    monkeypatch.setattr(type(loss), "set_progress", lambda self, s, t: seen.append((s, t)) or original(self, s, t))
    config = TrainingConfig(epochs=2, batch_size=4, learning_rate=1e-5, no_duplicates=False)  # 2 steps an epoch
    model = load_sparse_encoder(splade.document_head.mlm.name_or_path)
    loss.model = model
    train(model, loss, [data], config, tmp_path / "run")
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_an_inference_free_model_trains_its_query_weights(splade, tmp_path):
    data = read_training_data(write_pairs(tmp_path), columns=["query", "positive"])
    model = SparseEncoder(
        load_sparse_encoder(splade.document_head.mlm.name_or_path).document_head,
        splade.tokenizer,
        128,
        query_head=StaticQueryHead(torch.ones(splade.vocab_size)),
    )
    before = model.query_head.weight.detach().clone()
    loss = build_loss({"name": "splade", "query_regularizer_weight": None}, model)
    train(
        model,
        loss,
        [data],
        TrainingConfig(epochs=1, batch_size=4, learning_rate=1e-2, warmup_ratio=0, weight_decay=0.0),
        tmp_path / "r",
    )
    moved = (model.query_head.weight.detach() - before).abs()
    query_tokens = set(splade.tokenizer([q for q, _ in PAIRS], add_special_tokens=False)["input_ids"][0])
    assert all(moved[token] > 0 for token in query_tokens)  # the query tokens' weights learned
    assert moved.sum() == pytest.approx(
        moved[
            sorted(set().union(*[splade.tokenizer(q, add_special_tokens=False)["input_ids"] for q, _ in PAIRS]))
        ].sum()
    )  # and only theirs: a static query head reads its own tokens


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            "kind: sparse\nstages:\n  - data: [a.jsonl]\n    loss: splade\n    model_options: {pooling: cls}\n",
            "unknown key\\(s\\) pooling; allowed: max_seq_length, top_k, threshold",
        ),
        (
            "kind: sparse\nstages:\n  - data: [a.jsonl]\n    loss: splade\n    guide: x\n",
            "guide \\(GIST\\) applies to dense models, not to sparse models",
        ),
    ],
)
def test_sparse_recipes_are_checked(tmp_path, recipe, message):
    from gpte.train.recipe import load_recipe

    (tmp_path / "recipe.yaml").write_text(recipe, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_recipe(tmp_path / "recipe.yaml")


def test_lora_is_refused_for_a_sparse_model(splade, tmp_path):
    data = read_training_data(write_pairs(tmp_path), columns=["query", "positive"])
    with pytest.raises(ValueError, match="training a sparse model does not support lora"):
        train(splade, build_loss("splade", splade), [data], TrainingConfig(batch_size=4, lora={"r": 4}), tmp_path / "r")
