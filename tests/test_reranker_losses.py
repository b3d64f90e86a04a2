"""Reranker losses: each equals sentence-transformers' cross-encoder loss of the same name (value and gradients)
on the same logits, from a tiny random BERT cross-encoder that both sides run through sentence-transformers;
our losses on gpte's CrossEncoder equal sentence-transformers' on its CrossEncoder from the same folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import SMALL, minilm_folder
from sentence_transformers.cross_encoder import CrossEncoder as StCrossEncoder
from sentence_transformers.cross_encoder import losses as st_losses
from sentence_transformers.cross_encoder.losses.lambda_loss import (
    LambdaRankScheme,
    NDCGLoss1Scheme,
    NDCGLoss2PPScheme,
    NDCGLoss2Scheme,
)
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from gpte.models.cross_encoder import CrossEncoder
from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.reranker import RERANKER_LOSSES, PairScoreLoss, build_reranker_loss

QUERIES = ["what is a cat", "boiling point of water", "who wrote hamlet", "capital of france"]
DOCUMENTS = [  # per query: the positive, then three negatives
    ["a cat is a small pet", "dogs bark at night", "the sun is a star", "cats and dogs"],
    ["water boils at 100 degrees", "ice melts at zero", "the kettle is new", "boiling eggs takes minutes"],
    ["shakespeare wrote hamlet", "hamlet is a small village", "a play in five acts", "marlowe wrote faustus"],
    ["paris is the capital of france", "lyon is in france", "berlin is a capital", "france has many cities"],
]
COLUMNS = [QUERIES, *[list(column) for column in zip(*DOCUMENTS)]]
GRADED = torch.tensor([[3.0, 0.0, 1.0, 2.0], [2.0, 2.0, 0.0, 1.0], [1.0, 0.0, 0.5, 0.0], [3.0, 1.0, 1.0, 0.0]])
PADDED = torch.tensor([[1.0, 0.0, -1.0, -1.0], [2.0, 0.0, 1.0, -1.0], [1.0, 0.0, 0.5, 0.0], [1.0, -1.0, -1.0, -1.0]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny random BERT cross-encoder (one label; a wide init so that logits spread) with MiniLM's vocabulary."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1, initializer_range=0.5, **SMALL)
        model = BertForSequenceClassification(config)
    path = tmp_path_factory.mktemp("cross_encoder")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def st_model(folder) -> StCrossEncoder:
    """sentence-transformers' CrossEncoder of ``folder`` in float64, so that a pair's logit does not depend on how
    pairs are batched (the losses batch them differently; sentence-transformers' listwise losses still compute in
    float32, ours in float64 on float64 logits)."""
    return StCrossEncoder(str(folder), device="cpu", model_kwargs={"dtype": torch.float64}).eval()


class StPairScorer(torch.nn.Module):
    """Our losses' model: ``forward_pairs`` runs sentence-transformers' CrossEncoder on its own preprocessing."""

    def __init__(self, model: StCrossEncoder) -> None:
        super().__init__()
        self.model = model

    def forward_pairs(self, queries: list[str], documents: list[str]) -> torch.Tensor:
        features = self.model.preprocess(list(zip(queries, documents)))
        return self.model(features)["scores"].squeeze(-1)


def _batch(n_documents: int, scores: torch.Tensor | None = None) -> TrainingBatch:
    return TrainingBatch([list(column) for column in COLUMNS[: 1 + n_documents]], [], scores)


def _listwise_inputs(labels: torch.Tensor) -> tuple[list, list[torch.Tensor]]:
    """sentence-transformers' (queries, documents per query) inputs and labels, padded (-1) slots left out."""
    kept = [row != -1 for row in labels]
    documents = [[doc for doc, keep in zip(docs, row) if keep] for docs, row in zip(DOCUMENTS, kept)]
    return [QUERIES, documents], [row[keep] for row, keep in zip(labels, kept)]


def _value_and_grad(model: torch.nn.Module, loss: Callable[[], torch.Tensor], seed: int = 0):
    """The loss and the gradient of every weight of ``model`` (one flat vector)."""
    model.zero_grad()
    torch.manual_seed(seed)
    value = loss()
    value.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return value.item(), grads


# (our spec, documents per row, our scores, sentence-transformers loss factory, its inputs, its labels)
CASES = {
    "bce": ("bce", 1, torch.tensor([1.0, 0.0, 1.0, 0.0]), st_losses.BinaryCrossEntropyLoss, COLUMNS[:2], None),
    "bce_graded_pos_weight": (
        {"name": "bce", "pos_weight": 2.5},
        1,
        torch.tensor([0.9, 0.1, 0.6, 0.3]),
        lambda m: st_losses.BinaryCrossEntropyLoss(m, pos_weight=torch.tensor(2.5)),
        COLUMNS[:2],
        None,
    ),
    "margin_mse_margins": (
        "margin_mse",
        4,
        GRADED[:, 1:] - 1.5,
        st_losses.MarginMSELoss,
        COLUMNS,
        None,
    ),
    "margin_mse_teacher_scores": ("margin_mse", 4, GRADED, st_losses.MarginMSELoss, COLUMNS, None),
    "margin_mse_one_negative": (
        {"name": "margin_mse", "activation": "sigmoid"},
        2,
        torch.tensor([0.5, -0.2, 0.9, 0.1]),
        lambda m: st_losses.MarginMSELoss(m, activation_fn=torch.nn.Sigmoid()),
        COLUMNS[:3],
        None,
    ),
    "listnet_positive_first": ("listnet", 4, None, st_losses.ListNetLoss, *_listwise_inputs(torch.eye(4)[[0] * 4])),
    "listnet_graded": ("listnet", 4, GRADED, st_losses.ListNetLoss, *_listwise_inputs(GRADED)),
    "listnet_padded": ("listnet", 4, PADDED, st_losses.ListNetLoss, *_listwise_inputs(PADDED)),
    "mnrl": ("mnrl", 1, None, st_losses.MultipleNegativesRankingLoss, COLUMNS[:2], None),
    "mnrl_hard_negatives_sampled": (
        {"name": "mnrl", "num_negatives": 3, "scale": 5.0},
        3,
        None,
        lambda m: st_losses.MultipleNegativesRankingLoss(m, num_negatives=3, scale=5.0),
        COLUMNS[:4],
        None,
    ),
    "mnrl_all_negatives": (
        {"name": "mnrl", "num_negatives": None, "activation": "identity"},
        2,
        None,
        lambda m: st_losses.MultipleNegativesRankingLoss(m, num_negatives=None, activation_fn=None),
        COLUMNS[:3],
        None,
    ),
    "ranknet": ("ranknet", 4, GRADED, st_losses.RankNetLoss, *_listwise_inputs(GRADED)),
    "ranknet_k_natural": (
        {"name": "ranknet", "k": 2, "sigma": 0.5, "reduction_log": "natural"},
        4,
        PADDED,
        lambda m: st_losses.RankNetLoss(m, k=2, sigma=0.5, reduction_log="natural"),
        *_listwise_inputs(PADDED),
    ),
    "lambdaloss": ("lambdaloss", 4, GRADED, st_losses.LambdaLoss, *_listwise_inputs(GRADED)),
    "lambdaloss_positive_first": (
        "lambdaloss",
        4,
        None,
        st_losses.LambdaLoss,
        *_listwise_inputs(torch.eye(4)[[0] * 4]),
    ),
    "lambdaloss_padded_mu": (
        {"name": "lambdaloss", "mu": 3.0, "k": 3},
        4,
        PADDED,
        lambda m: st_losses.LambdaLoss(m, weighting_scheme=NDCGLoss2PPScheme(mu=3.0), k=3),
        *_listwise_inputs(PADDED),
    ),
    **{
        f"lambdaloss_{name}": (
            {"name": "lambdaloss", "weighting": name},
            4,
            GRADED,
            lambda m, scheme=scheme: st_losses.LambdaLoss(m, weighting_scheme=scheme()),
            *_listwise_inputs(GRADED),
        )
        for name, scheme in (
            ("ndcg_loss1", NDCGLoss1Scheme),
            ("ndcg_loss2", NDCGLoss2Scheme),
            ("lambdarank", LambdaRankScheme),
        )
    },
}


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_equal_sentence_transformers(case, st_model):
    spec, n_documents, scores, st_loss, st_inputs, st_labels = CASES[case]
    ours = build_reranker_loss(spec, StPairScorer(st_model))
    theirs = st_loss(st_model)
    labels = scores if st_labels is None else st_labels
    our_value, our_grads = _value_and_grad(st_model, lambda: ours(_batch(n_documents, scores)))
    st_value, st_grads = _value_and_grad(st_model, lambda: theirs(st_inputs, labels))
    assert our_value > 1e-3  # not a degenerate zero loss
    assert our_value == pytest.approx(st_value, abs=1e-6)
    assert torch.allclose(our_grads, st_grads, rtol=1e-5, atol=1e-6)


def test_every_loss_is_tested_and_named_after_its_class():
    tested = {(case["name"] if isinstance(case, dict) else case) for case, *_ in CASES.values()}
    assert tested == set(RERANKER_LOSSES)
    assert all(issubclass(cls, PairScoreLoss) and cls.name == name for name, cls in RERANKER_LOSSES.items())


def test_listnet_graded_labels_weigh_candidates_by_label_softmax():
    """ListNet's target is softmax(labels): with logits equal to the labels the loss is their entropy."""

    class Fixed(torch.nn.Module):
        def forward_pairs(self, queries: list[str], documents: list[str]) -> torch.Tensor:
            return GRADED.flatten()

    target = GRADED.softmax(dim=1)
    entropy = -(target * target.log()).sum(dim=1).mean()
    loss = build_reranker_loss("listnet", Fixed())(_batch(4, GRADED))
    assert loss.item() == pytest.approx(entropy.item(), abs=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("listmle", "choose one of: bce, margin_mse, listnet, mnrl, ranknet, lambdaloss"),
        ({"name": "bce", "temperature": 0.1}, "unknown option(s) temperature; allowed: pos_weight, activation"),
        ({"name": "lambdaloss", "weighting": "ndcg"}, "ndcg_loss2pp, ndcg_loss2, lambdarank, ndcg_loss1, none"),
        ({"name": "mnrl", "activation": "tanh"}, "choose one of: identity, sigmoid"),
        ({"name": "ranknet", "reduction_log": "ten"}, "choose one of: binary, natural"),
        ({"name": "mnrl", "num_negatives": 0}, "num_negatives must be a positive integer or None"),
        ({"name": "bce", "pos_weight": -1}, "pos_weight must be a positive number"),
    ],
)
def test_bad_options_name_the_allowed_values(spec, message):
    with pytest.raises(ValueError) as error:
        build_reranker_loss(spec, torch.nn.Identity())
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("name", "n_columns", "has_scores", "message"),
    [
        ("bce", 3, True, "loss 'bce' takes 2 text columns, the data has 3"),
        ("bce", 2, False, "loss 'bce' needs a score for each row"),
        ("margin_mse", 2, True, "loss 'margin_mse' takes at least 3 text columns, the data has 2"),
        ("listnet", 1, False, "loss 'listnet' takes at least 2 text columns, the data has 1"),
    ],
)
def test_wrong_columns_are_refused(name, n_columns, has_scores, message):
    loss = build_reranker_loss(name, torch.nn.Identity())
    with pytest.raises(ValueError, match=r"^train\.jsonl: ") as error:
        loss.check_columns(n_columns, has_scores, "train.jsonl")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("name", "scores", "message"),
    [
        ("listnet", torch.ones(4, 2), "labels of shape (4, 2) do not match the (4, 3)"),
        ("margin_mse", torch.ones(4, 5), "labels of shape (4, 5) fit neither the 2 margins"),
        ("bce", torch.ones(4, 2), "loss 'bce' takes one label per row"),
    ],
)
def test_labels_of_the_wrong_shape_are_refused(name, scores, message, st_model):
    n_documents = 1 if name == "bce" else 3
    with pytest.raises(ValueError) as error:
        build_reranker_loss(name, StPairScorer(st_model))(_batch(n_documents, scores))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("spec", "n_documents", "scores", "st_loss"),
    [
        ("bce", 1, CASES["bce"][2], st_losses.BinaryCrossEntropyLoss),
        ("listnet", 4, GRADED, lambda m: st_losses.ListNetLoss(m, mini_batch_size=-1)),
        ("lambdaloss", 4, PADDED, lambda m: st_losses.LambdaLoss(m, mini_batch_size=-1)),
    ],
)
def test_loss_on_gpte_cross_encoder_equals_sentence_transformers(spec, n_documents, scores, st_loss, folder):
    """Both in float32, all pairs in one batch on both sides (sentence-transformers' listwise losses with
    ``mini_batch_size=-1``), so that the pairs are padded alike."""
    st_model = StCrossEncoder(str(folder), device="cpu").eval()
    batch = _batch(n_documents, scores)
    ours = build_reranker_loss(spec, CrossEncoder.load(folder, device="cpu"))(batch)
    st_inputs = (batch.texts, scores) if spec == "bce" else _listwise_inputs(scores)
    theirs = st_loss(st_model)(*st_inputs)
    assert ours.requires_grad
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
