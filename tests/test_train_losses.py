"""Training losses: values equal sentence-transformers' losses (or the hand formula) on the same embeddings;
wrappers reuse the base math; GradCache gives the full-batch gradients; negatives gathered across two
DDP processes give the single-process loss and gradients."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer import losses as st_losses

from gpte import Embedder
from gpte.data.training import TrainingExample
from gpte.train.collator import TrainingCollator
from gpte.train.losses import LOSSES, TrainingBatch, build_loss
from gpte.train.losses.infonce import InfoNCELoss

torch.manual_seed(0)
ROWS, DIM = 6, 8


class _StubModel(torch.nn.Module):
    """Stands in for a SentenceTransformer/Embedder where a loss only needs ``compute`` on embeddings."""

    dimension = DIM

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # ST losses read the device of a parameter

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def similarity_fn_name(self) -> str:  # pragma: no cover - only read by some ST versions
        return "cosine"


def _embeddings(columns: int, rows: int = ROWS, dim: int = DIM, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, dim, generator=generator, dtype=torch.float64) for _ in range(columns)]


def _batch(columns: int, scores: torch.Tensor | None = None) -> TrainingBatch:
    return TrainingBatch([["t"] * ROWS for _ in range(columns)], [], scores)


def test_infonce_matches_sentence_transformers_mnrl_with_hard_negatives():
    embeddings = _embeddings(4)
    ours = build_loss({"name": "infonce", "temperature": 0.05}, _StubModel()).compute(embeddings, _batch(4))
    theirs = st_losses.MultipleNegativesRankingLoss(_StubModel(), scale=20.0).compute_loss_from_embeddings(
        embeddings, None
    )
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)


def test_infonce_gte_terms_match_sentence_transformers_directions_on_pairs():
    embeddings = _embeddings(2)
    ours = build_loss({"name": "infonce", "gte": True}, _StubModel()).compute(embeddings, _batch(2))
    directions = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
    theirs = st_losses.MultipleNegativesRankingLoss(_StubModel(), directions=directions).compute_loss_from_embeddings(
        embeddings, None
    )
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)


def test_infonce_by_hand_with_symmetric_and_query_negatives():
    q, d = _embeddings(2)
    s = lambda a, b: F.cosine_similarity(a, b, dim=0).item() / 0.1  # noqa: E731
    forward = backward = 0.0
    for i in range(ROWS):
        z = sum(math.exp(s(q[i], d[j])) for j in range(ROWS)) + sum(
            math.exp(s(q[i], q[j])) for j in range(ROWS) if j != i
        )
        forward -= math.log(math.exp(s(q[i], d[i])) / z)
        backward -= math.log(math.exp(s(d[i], q[i])) / sum(math.exp(s(d[i], q[j])) for j in range(ROWS)))
    loss = InfoNCELoss(_StubModel(), temperature=0.1, query_negatives=True, symmetric=True).compute([q, d])
    assert loss.item() == pytest.approx((forward + backward) / 2 / ROWS, rel=1e-10)


@pytest.mark.parametrize(
    "name, st_class, columns, score_kind",
    [
        ("cosent", st_losses.CoSENTLoss, 2, "graded"),
        ("angle", st_losses.AnglELoss, 2, "graded"),
        ("cosine_mse", st_losses.CosineSimilarityLoss, 2, "unit"),
        ("triplet", st_losses.TripletLoss, 3, None),
        ("margin_mse", st_losses.MarginMSELoss, 3, "margin"),
    ],
)
def test_pair_losses_match_sentence_transformers(name, st_class, columns, score_kind):
    embeddings = _embeddings(columns)
    scores = {
        "graded": torch.tensor([0.0, 1.5, 3.0, 5.0, 2.5, 4.0]),
        "unit": torch.rand(ROWS),
        "margin": torch.randn(ROWS),
        None: None,
    }[score_kind]
    ours = build_loss(name, _StubModel()).compute(embeddings, _batch(columns, scores))
    theirs = (
        st_class(_StubModel()).compute_loss_from_embeddings(embeddings, scores)
        if hasattr(st_class, "compute_loss_from_embeddings")
        else None
    )
    if theirs is None:  # ST losses without compute_loss_from_embeddings take (features, labels) through the model
        theirs = _st_forward(st_class, embeddings, scores)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6, abs=1e-9)


def _st_forward(st_class, embeddings, scores):
    class Fixed(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": embeddings[features["column"]]}

    loss = st_class(Fixed())
    return loss([{"column": i} for i in range(len(embeddings))], scores)


def test_kl_distillation_is_kl_plus_weighted_infonce():
    embeddings = _embeddings(3)
    teacher = torch.randn(ROWS, 2, dtype=torch.float64)
    batch = _batch(3, teacher)
    pure = build_loss(
        {"name": "kl_distillation", "contrastive_weight": 0.0, "temperature": 0.05}, _StubModel()
    ).compute(embeddings, batch)
    student = torch.stack([F.cosine_similarity(embeddings[0], c, dim=1) for c in embeddings[1:]], dim=1) / 0.05
    p_teacher = teacher.softmax(dim=1)
    by_hand = (p_teacher * (p_teacher.log() - student.log_softmax(dim=1))).sum(dim=1).mean()
    assert pure.item() == pytest.approx(by_hand.item(), rel=1e-10)
    mixed = build_loss({"name": "kl_distillation", "contrastive_weight": 0.3}, _StubModel()).compute(embeddings, batch)
    infonce = InfoNCELoss(_StubModel()).compute(embeddings)
    assert mixed.item() == pytest.approx(pure.item() + 0.3 * infonce.item(), rel=1e-10)


def test_matryoshka_is_weighted_sum_of_truncated_base_losses():
    embeddings = _embeddings(2)
    scores = torch.tensor([0.0, 1.5, 3.0, 5.0, 2.5, 4.0])
    loss = build_loss({"name": "cosent", "matryoshka": {"dims": [8, 4, 2], "weights": [1.0, 0.5, 0.25]}}, _StubModel())
    base = LOSSES["cosent"](_StubModel())
    expected = sum(
        w * base.compute([e[:, :d] for e in embeddings], _batch(2, scores)) for d, w in [(8, 1.0), (4, 0.5), (2, 0.25)]
    )
    assert loss.compute(embeddings, _batch(2, scores)).item() == pytest.approx(expected.item(), rel=1e-12)


def test_gist_masks_negatives_the_guide_scores_above_the_positive():
    q, d = _embeddings(2)
    d[3] = q[0] * 2  # row 3's positive is, for the guide, a better match for query 0 than query 0's own positive
    guide = [q, d]
    gist = LOSSES["gist"](_StubModel(), guide=None)
    logits, own = gist.logits([q, d], guide)
    plain, _ = InfoNCELoss(_StubModel()).logits([q, d])
    assert torch.isinf(logits[0, 3]) and logits[0, 3] < 0
    unmasked = ~torch.isinf(logits)
    assert torch.equal(logits[unmasked], plain[unmasked])
    assert not torch.isinf(logits[torch.arange(ROWS), own]).any()


def test_simcse_views_differ_in_training_and_coincide_in_eval(tiny_models):
    model = Embedder.load(tiny_models["bert"], device="cpu")
    batch = TrainingCollator(model)(
        [TrainingExample((text,)) for text in ["a cat", "a dog sat", "rain falls", "the sun"]]
    )
    loss = build_loss("simcse", model)
    model.eval()
    same = loss(batch)
    expected = InfoNCELoss(model).compute([model(batch.features[0])] * 2)
    assert same.item() == pytest.approx(expected.item(), rel=1e-6)
    model.train()
    views = loss.prepare(batch)
    first, second = (model(f) for f in views.features)
    assert not torch.allclose(first, second)


def _tiny_batch(model, rows=8):
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(rows)]
    examples = [
        TrainingExample((texts[i], texts[(i + 1) % rows] + " again", texts[(i + 2) % rows] + " not"))
        for i in range(rows)
    ]
    return TrainingCollator(model)(examples)


def _gradients(model, loss, batch):
    model.zero_grad()
    value = loss(batch)
    value.backward()
    return value.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "spec", [{"name": "infonce"}, {"name": "infonce", "gte": True, "matryoshka": {"dims": [32, 8]}}]
)
def test_gradcache_gives_full_batch_loss_and_gradients(tiny_models, spec):
    model = Embedder.load(tiny_models["bert"], device="cpu")
    model.eval()  # dropout off: the full batch and the mini-batches then see the same network
    batch = _tiny_batch(model)
    full_value, full = _gradients(model, build_loss(spec, model), batch)
    cached_value, cached = _gradients(model, build_loss({**spec, "gradcache": {"mini_batch_size": 3}}, model), batch)
    assert cached_value == pytest.approx(full_value, abs=1e-6)
    assert full.keys() == cached.keys()
    assert max((full[k] - cached[k]).abs().max().item() for k in full) <= 1e-5


def test_gradcache_replays_dropout_exactly(tiny_models):
    """With dropout on, the cached pass and the replay must use the same masks: the gradient then equals
    the gradient of the loss on the embeddings the first pass produced."""
    model = Embedder.load(tiny_models["bert"], device="cpu")
    model.train()
    batch = _tiny_batch(model)
    loss = build_loss({"name": "infonce", "gradcache": {"mini_batch_size": 4}}, model)
    torch.manual_seed(5)
    value, cached = _gradients(model, loss, batch)
    torch.manual_seed(5)
    # the same RNG stream, consumed in the same mini-batch order, with a graph this time
    from gpte.train.losses.gradcache import _split

    model.zero_grad()
    embeddings = [torch.cat([model(chunk) for chunk in _split(features, 4)]) for features in batch.features]
    reference = loss.base.compute(embeddings, batch)
    reference.backward()
    assert value == pytest.approx(reference.item(), abs=1e-6)
    assert (
        max((p.grad - cached[n]).abs().max().item() for n, p in model.named_parameters() if p.grad is not None) <= 1e-5
    )


# ----------------------------------------------------------------- DDP: negatives shared across processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, inputs: list[torch.Tensor], weight: torch.Tensor, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    model = torch.nn.parallel.DistributedDataParallel(layer)
    rows = inputs[0].shape[0] // world
    local = [x[rank * rows : (rank + 1) * rows] for x in inputs]
    loss = InfoNCELoss(model, gte=True, symmetric=True).compute([model(x) for x in local])
    loss.backward()
    value = loss.detach().clone()
    dist.all_reduce(value)
    results[rank] = (value.item() / world, layer.weight.grad.clone())
    dist.destroy_process_group()


def test_two_process_ddp_matches_one_process_on_the_combined_batch():
    torch.manual_seed(1)
    inputs = [torch.randn(8, 5) for _ in range(3)]  # query, positive, hard negative (8 rows = 2 x 4)
    weight = torch.randn(4, 5)
    layer = torch.nn.Linear(5, 4, bias=False)
    layer.weight.data.copy_(weight)
    single = InfoNCELoss(layer, gte=True, symmetric=True).compute([layer(x) for x in inputs])
    single.backward()
    manager = torch.multiprocessing.get_context("spawn").Manager()
    results = manager.dict()
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), inputs, weight, results), nprocs=2, join=True)
    for rank in range(2):
        value, grad = results[rank]
        assert value == pytest.approx(single.item(), abs=1e-5)
        assert torch.allclose(grad, layer.weight.grad, atol=1e-6)


def test_unknown_loss_and_option_are_named():
    with pytest.raises(ValueError, match="unknown loss 'infonc'; choose one of: infonce, cosent"):
        build_loss("infonc", _StubModel())
    with pytest.raises(ValueError, match="infonce: unknown option.*temprature.*allowed: temperature"):
        build_loss({"name": "infonce", "temprature": 0.1}, _StubModel())
    with pytest.raises(ValueError, match="matryoshka dims must be integers from 1 to the model's dimension 8"):
        build_loss({"name": "infonce", "matryoshka": {"dims": [16]}}, _StubModel())


def test_data_that_does_not_fit_the_loss_is_named():
    with pytest.raises(ValueError, match="pairs.jsonl: loss 'triplet' takes 3 text columns, the data has 2"):
        build_loss("triplet", _StubModel()).check_columns(2, False, "pairs.jsonl")
    with pytest.raises(ValueError, match="x.jsonl: loss 'cosent' takes 2 text columns, the data has 3"):
        build_loss("cosent", _StubModel()).check_columns(3, True, "x.jsonl")
    with pytest.raises(ValueError, match="loss 'infonce' takes at least 2 text columns, the data has 1"):
        build_loss("infonce", _StubModel()).check_columns(1, False, "t.jsonl")
    with pytest.raises(ValueError, match="loss 'gist' needs a guide model"):
        build_loss("gist", _StubModel())
