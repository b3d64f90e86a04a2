"""Sparse losses: SPLADE (ranking loss + FLOPS, warmed-up weights) and CSR (autoencoder reconstruction +
ranking) equal sentence-transformers' sparse losses on the same vectors (values, terms and gradients), and
bad columns, options or models are named."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sparse_encoder import losses as st_losses
from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import SpladeRegularizerWeightSchedulerCallback
from sentence_transformers.sparse_encoder.modules.sparse_auto_encoder import SparseAutoEncoder
from transformers import TrainerState

from gpte.models.tokenization import TokenBatch
from gpte.train.losses import LOSSES, TrainingBatch, build_loss
from gpte.train.losses.gradcache import CachedLoss
from gpte.train.losses.sparse import CSRLoss, FlopsLoss, SpladeLoss, flops

ROWS, VOCAB = 6, 40


class _Fixed(torch.nn.Module):
    """A model for both sides: sentence-transformers gets ``{"sentence_embedding": ...}`` per column, gpte the
    column's tensor; ``outputs`` (per column) may hold a CSR autoencoder's dicts instead of tensors."""

    dimension = VOCAB

    def __init__(self, outputs: list | None = None) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.outputs = outputs or []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, features: dict | int):
        if isinstance(features, int):  # gpte: the batch's features are the column numbers
            return self.outputs[features]
        output = self.outputs[features["column"]]
        return output if isinstance(output, dict) else {"sentence_embedding": output}

    def autoencoder_outputs(self, column: int) -> dict:
        return self.outputs[column]


def _sparse(columns: int, rows: int = ROWS, seed: int = 0) -> list[torch.Tensor]:
    """Non-negative float64 weights, about half zero (SPLADE-like), with gradients."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(rows, VOCAB, generator=generator, dtype=torch.float64).relu().requires_grad_()
        for _ in range(columns)
    ]


def _batch(columns: int, scores: torch.Tensor | None = None) -> TrainingBatch:
    return TrainingBatch([["t"] * ROWS for _ in range(columns)], list(range(columns)), scores)


def _st_terms(st_loss: torch.nn.Module, n_columns: int, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    return st_loss([{"column": i} for i in range(n_columns)], labels)


def _assert_same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], inputs: list[torch.Tensor]) -> None:
    """Same terms, same total (as sentence-transformers' trainer sums it) and same gradients to ``inputs``."""
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key].item() == pytest.approx(theirs[key].item(), rel=1e-6, abs=1e-12), key
    total_ours, total_theirs = sum(ours.values()), torch.stack(list(theirs.values())).sum()
    assert total_ours.item() == pytest.approx(total_theirs.item(), rel=1e-6, abs=1e-12)
    grads_ours = torch.autograd.grad(total_ours, inputs, retain_graph=True, allow_unused=True)
    grads_theirs = torch.autograd.grad(total_theirs, inputs, retain_graph=True, allow_unused=True)
    for mine, other in zip(grads_ours, grads_theirs):
        assert (mine is None) == (other is None)
        if mine is not None:
            assert torch.allclose(mine, other, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- FLOPS


@pytest.mark.parametrize("threshold", [None, 0, 18, 22])
def test_flops_matches_sentence_transformers_flops_loss(threshold):
    (weights,) = _sparse(1, rows=12)
    theirs = st_losses.FlopsLoss(_Fixed(), threshold=threshold).compute_loss_from_embeddings(weights)
    assert FlopsLoss(threshold)(weights).item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-15)
    by_hand = sum(
        (sum(weights[i, j].item() for i in range(12) if threshold is None or (weights[i] != 0).sum() > threshold) / 12)
        ** 2
        for j in range(VOCAB)
    )
    assert flops(weights, threshold).item() == pytest.approx(by_hand, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- SPLADE


def _st_splade(base: torch.nn.Module, model: torch.nn.Module, **options) -> st_losses.SpladeLoss:
    return st_losses.SpladeLoss(model, base, **options)


@pytest.mark.parametrize("columns", [2, 4])
def test_splade_with_mnrl_matches_sentence_transformers(columns):
    embeddings = _sparse(columns)
    model = _Fixed(embeddings)
    ours = build_loss(
        {
            "name": "splade",
            "loss": {"name": "infonce"},
            "document_regularizer_weight": 0.03,
            "query_regularizer_weight": 0.05,
        },
        model,
    )
    theirs = _st_splade(
        st_losses.SparseMultipleNegativesRankingLoss(model),
        model,
        document_regularizer_weight=0.03,
        query_regularizer_weight=0.05,
    )
    _assert_same(ours.terms(embeddings, _batch(columns)), _st_terms(theirs, columns, None), embeddings)
    assert ours(_batch(columns)).item() == pytest.approx(ours.compute(embeddings, _batch(columns)).item(), rel=1e-12)


@pytest.mark.parametrize("score_shape", ["per_negative", "margin_column", "pos_and_negatives"])
def test_splade_with_margin_mse_matches_sentence_transformers(score_shape):
    columns = 3 if score_shape == "margin_column" else 4
    embeddings = _sparse(columns, seed=1)
    model = _Fixed(embeddings)
    generator = torch.Generator().manual_seed(3)
    margins = torch.randn(ROWS, columns - 2, generator=generator, dtype=torch.float64) * 5
    st_labels = margins[:, 0] if score_shape == "margin_column" else margins
    ours_scores = st_labels
    if score_shape == "pos_and_negatives":  # sentence-transformers also takes (positive, negatives) scores
        st_labels = torch.cat([torch.zeros(ROWS, 1, dtype=torch.float64), -margins], dim=1)
    ours = build_loss({"name": "splade", "loss": "margin_mse", "document_regularizer_weight": 0.2}, model)
    theirs = _st_splade(
        st_losses.SparseMarginMSELoss(model), model, document_regularizer_weight=0.2, query_regularizer_weight=5e-5
    )
    _assert_same(
        ours.terms(embeddings, _batch(columns, ours_scores)), _st_terms(theirs, columns, st_labels), embeddings
    )


def test_splade_with_kl_distillation_matches_sparse_distill_kl_div_at_temperature_one():
    embeddings = _sparse(4, seed=2)
    model = _Fixed(embeddings)
    teacher = torch.randn(ROWS, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3
    ours = build_loss({"name": "splade", "loss": "kl_distillation", "query_regularizer_weight": 0.01}, model)
    theirs = _st_splade(
        st_losses.SparseDistillKLDivLoss(model, temperature=1.0),
        model,
        document_regularizer_weight=3e-5,
        query_regularizer_weight=0.01,
    )
    _assert_same(ours.terms(embeddings, _batch(4, teacher)), _st_terms(theirs, 4, teacher), embeddings)


@pytest.mark.parametrize("query_weight", [None, 0, 0.0])
def test_splade_query_regularizer_off(query_weight):
    embeddings = _sparse(3, seed=5)
    model = _Fixed(embeddings)
    ours = SpladeLoss(model, "infonce", document_regularizer_weight=0.1, query_regularizer_weight=query_weight)
    theirs = _st_splade(st_losses.SparseMultipleNegativesRankingLoss(model), model, document_regularizer_weight=0.1)
    terms = ours.terms(embeddings, _batch(3))
    assert "query_regularizer_loss" not in terms
    _assert_same(terms, _st_terms(theirs, 3, None), embeddings)
    ours.set_progress(1, 9)
    assert ours.query_regularizer_weight is None


def test_splade_thresholds_and_document_regularizer_only_match_sentence_transformers():
    embeddings = _sparse(3, seed=6)
    model = _Fixed(embeddings)
    options = {
        "document_regularizer_weight": 0.2,
        "document_regularizer_threshold": 19,
        "query_regularizer_threshold": 21,
    }
    ours = SpladeLoss(model, "infonce", query_regularizer_weight=0.3, **options)
    theirs = _st_splade(
        st_losses.SparseMultipleNegativesRankingLoss(model), model, query_regularizer_weight=0.3, **options
    )
    _assert_same(ours.terms(embeddings, _batch(3)), _st_terms(theirs, 3, None), embeddings)
    ours = SpladeLoss(model, "infonce", document_regularizer_weight=0.2, use_document_regularizer_only=True)
    theirs = _st_splade(
        st_losses.SparseMultipleNegativesRankingLoss(model),
        model,
        document_regularizer_weight=0.2,
        use_document_regularizer_only=True,
    )
    _assert_same(ours.terms(embeddings, _batch(3)), _st_terms(theirs, 3, None), embeddings)


@pytest.mark.parametrize(
    "total_steps, warmup_ratio, schedule",
    [
        (30, 1 / 3, "quadratic"),
        (7, 1 / 3, "quadratic"),
        (2, 1 / 3, "quadratic"),
        (10, 1.0, "linear"),
        (13, 0.5, "quadratic"),
    ],
)
def test_warmup_weights_follow_sentence_transformers_callback(total_steps, warmup_ratio, schedule):
    embeddings = _sparse(3, seed=7)
    model = _Fixed(embeddings)
    ours = SpladeLoss(model, "infonce", 0.03, 0.05, warmup_ratio=warmup_ratio, warmup_schedule=schedule)
    theirs = _st_splade(
        st_losses.SparseMultipleNegativesRankingLoss(model),
        model,
        document_regularizer_weight=0.03,
        query_regularizer_weight=0.05,
    )
    callback = SpladeRegularizerWeightSchedulerCallback(theirs, scheduler_type=schedule, warmup_ratio=warmup_ratio)
    state = TrainerState(max_steps=total_steps)
    callback.on_train_begin(None, state, None)
    for step in range(total_steps + 2):
        state.global_step = step
        callback.on_step_begin(None, state, None)
        ours.set_progress(step, total_steps)
        assert ours.document_regularizer_weight == pytest.approx(theirs.document_regularizer_weight, rel=1e-15, abs=0)
        assert ours.query_regularizer_weight == pytest.approx(theirs.query_regularizer_weight, rel=1e-15, abs=0)
        if step in (0, 1, total_steps // 4):
            _assert_same(ours.terms(embeddings, _batch(3)), _st_terms(theirs, 3, None), embeddings)
    assert ours.document_regularizer_weight == 0.03 and ours.query_regularizer_weight == 0.05


def test_warmup_formula_by_hand_and_off():
    loss = SpladeLoss(_Fixed(), "infonce", 0.9, 0.6)
    assert loss.document_regularizer_weight == 0.9  # before set_progress: full weights
    loss.set_progress(0, 30)
    assert loss.document_regularizer_weight == 0.0 and loss.query_regularizer_weight == 0.0
    loss.set_progress(5, 30)  # warm-up steps int(30 / 3) = 10
    assert loss.document_regularizer_weight == pytest.approx(0.9 * 0.25)
    assert loss.query_regularizer_weight == pytest.approx(0.6 * 0.25)
    loss.set_progress(10, 30)
    assert loss.document_regularizer_weight == 0.9
    no_warmup = SpladeLoss(_Fixed(), "infonce", 0.9, 0.6, warmup_ratio=0)
    no_warmup.set_progress(0, 30)
    assert no_warmup.document_regularizer_weight == 0.9 and no_warmup.query_regularizer_weight == 0.6


class _TinySplade(torch.nn.Module):
    """log(1 + relu(token logits)) max-pooled over the unmasked tokens: a SPLADE head on an embedding table."""

    dimension = VOCAB

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(VOCAB, VOCAB, generator=generator, dtype=torch.float64))

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        weights = torch.log1p(torch.relu(self.table[batch.input_ids]))
        return (weights * batch.attention_mask[..., None]).amax(dim=1)


def _token_batch(rows: int, seed: int) -> TokenBatch:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (rows, 5), generator=generator)
    mask = torch.ones(rows, 5, dtype=torch.long)
    mask[::2, 3:] = 0
    return TokenBatch(ids, mask, torch.arange(5).expand(rows, 5))


def test_splade_forward_and_gradcache_give_the_full_batch_loss_and_gradients():
    model = _TinySplade()
    features = [_token_batch(8, seed) for seed in range(3)]
    batch = TrainingBatch([["t"] * 8] * 3, features)
    spec = {"name": "splade", "document_regularizer_weight": 0.1, "query_regularizer_weight": 0.2}
    plain = build_loss(spec, model)
    loss = plain(batch)
    expected = plain.compute([model(f) for f in features], batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    (full,) = torch.autograd.grad(loss, [model.table])
    cached = build_loss({**spec, "gradcache": {"mini_batch_size": 3}}, model)
    assert isinstance(cached, CachedLoss) and isinstance(cached.base, SpladeLoss)
    value = cached(batch)
    value.backward()
    assert value.item() == pytest.approx(loss.item(), rel=1e-10)
    assert torch.allclose(model.table.grad, full, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- CSR


def _csr_outputs(columns: int, k_aux: int, seed: int = 0) -> tuple[list[dict], list[torch.Tensor]]:
    """sentence-transformers' SparseAutoEncoder outputs (training mode) for ``columns`` random dense columns."""
    torch.manual_seed(seed)
    autoencoder = SparseAutoEncoder(input_dim=8, hidden_dim=32, k=4, k_aux=k_aux).double().train()
    torch.nn.init.normal_(autoencoder.pre_bias, std=0.1)
    torch.nn.init.normal_(autoencoder.latent_bias, std=0.1)
    autoencoder.stats_last_nonzero[16:] = 100  # half the latents are dead: the auxiliary term is not empty
    outputs = [autoencoder({"sentence_embedding": torch.randn(ROWS, 8, dtype=torch.float64)}) for _ in range(columns)]
    return outputs, list(autoencoder.parameters())


@pytest.mark.parametrize("columns, k_aux, beta, gamma", [(3, 8, 0.1, 1.0), (2, 8, 1.0, 0.5), (3, 0, 0.1, 2.0)])
def test_csr_matches_sentence_transformers(columns, k_aux, beta, gamma):
    outputs, parameters = _csr_outputs(columns, k_aux)
    assert (outputs[0]["decoded_embedding_aux"] is None) == (k_aux == 0)
    model = _Fixed(outputs)
    ours = build_loss({"name": "csr", "beta": beta, "gamma": gamma}, model)
    theirs = st_losses.CSRLoss(model, beta=beta, gamma=gamma)
    terms = ours.terms(outputs, _batch(columns))
    _assert_same(terms, _st_terms(theirs, columns, None), parameters)
    assert ours(_batch(columns)).item() == pytest.approx(sum(terms.values()).item(), rel=1e-12)


def test_csr_reconstruction_matches_sentence_transformers():
    outputs, _ = _csr_outputs(2, 8, seed=3)
    ours = CSRLoss(_Fixed(outputs), beta=0.7).reconstruction.terms(outputs)
    theirs = st_losses.CSRReconstructionLoss(_Fixed(), beta=0.7).compute_loss_from_embeddings(outputs)
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key].item() == pytest.approx(theirs[key].item(), rel=1e-10, abs=1e-15)


# ---------------------------------------------------------------- hostile


def test_registered_and_named():
    assert LOSSES["splade"] is SpladeLoss and LOSSES["csr"] is CSRLoss
    loss = build_loss("splade", _Fixed())
    assert loss.name == "splade(infonce)"
    assert (loss.base.similarity, loss.base.temperature) == ("dot", 1.0)
    assert (loss.max_document_regularizer_weight, loss.max_query_regularizer_weight) == (3e-5, 5e-5)


def test_splade_wrong_columns_are_named():
    loss = build_loss({"name": "splade", "loss": "margin_mse"}, _Fixed())
    with pytest.raises(
        ValueError, match="pairs.jsonl: loss 'splade.margin_mse.' takes at least 3 text columns, the data has 2"
    ):
        loss.check_columns(2, True, "pairs.jsonl")
    with pytest.raises(ValueError, match="loss 'splade.margin_mse.' needs a score for each row"):
        loss.check_columns(3, False, "t.jsonl")
    infonce = build_loss("splade", _Fixed())
    with pytest.raises(ValueError, match="loss 'splade.infonce.' takes at least 2 text columns, the data has 1"):
        infonce.check_columns(1, False, "t.jsonl")
    with pytest.raises(
        ValueError, match=r"splade\(infonce\): needs at least 2 columns \(query, then documents\), got 1"
    ):
        infonce.compute(_sparse(1), _batch(1))
    mixed = [_sparse(1)[0], torch.rand(ROWS, VOCAB + 1, dtype=torch.float64)]
    with pytest.raises(ValueError, match="every column must be \\(rows, vocab_size\\) weights of one vocabulary"):
        infonce.compute(mixed, _batch(2))


def test_bad_splade_options_are_named():
    with pytest.raises(
        ValueError, match="splade: unknown option.*document_weight.*allowed: loss, document_regularizer_weight"
    ):
        build_loss({"name": "splade", "document_weight": 1.0}, _Fixed())
    with pytest.raises(ValueError, match="infonce: unknown option.*temprature"):
        build_loss({"name": "splade", "loss": {"name": "infonce", "temprature": 1.0}}, _Fixed())
    with pytest.raises(ValueError, match="unknown loss 'infonc'"):
        build_loss({"name": "splade", "loss": "infonc"}, _Fixed())
    with pytest.raises(ValueError, match="splade: 'splade' cannot be the inner loss"):
        build_loss({"name": "splade", "loss": "splade"}, _Fixed())
    with pytest.raises(ValueError, match="splade: put gradcache on the splade section, not on its inner loss"):
        build_loss({"name": "splade", "loss": {"name": "infonce", "gradcache": {}}}, _Fixed())
    with pytest.raises(ValueError, match="splade: the inner loss 'mntp' does not compute on embeddings"):
        build_loss({"name": "splade", "loss": "mntp"}, _Fixed())
    with pytest.raises(ValueError, match="document_regularizer_weight must be a number >= 0, got -1"):
        build_loss({"name": "splade", "document_regularizer_weight": -1}, _Fixed())
    with pytest.raises(ValueError, match="query_regularizer_weight must be a number >= 0 or None, got 'x'"):
        build_loss({"name": "splade", "query_regularizer_weight": "x"}, _Fixed())
    with pytest.raises(ValueError, match="warmup_ratio must be a number from 0 to 1, got 2"):
        build_loss({"name": "splade", "warmup_ratio": 2}, _Fixed())
    with pytest.raises(ValueError, match="unknown warmup_schedule 'cubic'"):
        build_loss({"name": "splade", "warmup_schedule": "cubic"}, _Fixed())
    with pytest.raises(ValueError, match="document_regularizer_threshold must be None or a number >= 0"):
        build_loss({"name": "splade", "document_regularizer_threshold": -3}, _Fixed())
    with pytest.raises(ValueError, match="set_progress needs step >= 0 and total_steps >= 1, got -1, 10"):
        build_loss("splade", _Fixed()).set_progress(-1, 10)


def test_bad_csr_models_and_wrappers_are_named():
    class Dense(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match=r"csr: the model \(Dense\) has no autoencoder_outputs\(features\)"):
        build_loss("csr", Dense())
    with pytest.raises(ValueError, match="loss 'csr' reads the model's intermediate outputs: gradcache cannot wrap it"):
        build_loss({"name": "csr", "gradcache": {"mini_batch_size": 2}}, _Fixed())
    outputs, _ = _csr_outputs(2, 8)
    incomplete = [{k: v for k, v in o.items() if k != "decoded_embedding_4k"} for o in outputs]
    with pytest.raises(ValueError, match="csr.infonce.: model.autoencoder_outputs lacks decoded_embedding_4k"):
        build_loss("csr", _Fixed(incomplete))(_batch(2))
    with pytest.raises(ValueError, match="csr.infonce.: needs the autoencoder's outputs, not embeddings"):
        build_loss("csr", _Fixed()).compute(_sparse(2), _batch(2))
