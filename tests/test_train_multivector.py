"""Training a multi-vector (ColBERT) model: the colbert_* losses equal sentence-transformers 6's MultiVectorEncoder
losses on the same tiny model (values and gradients), GradCache equals the full batch (and sentence-transformers'
cached loss), a ``kind: multivector`` recipe learns, resumes exactly from a checkpoint and saves a folder that
sentence-transformers loads with equal vectors, and hostile inputs are refused with their reason."""

from __future__ import annotations

import json
import shutil
import string
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import MultiVectorEncoder as STMultiVectorEncoder
from sentence_transformers.multi_vector_encoder import losses as st_losses
from sentence_transformers.multi_vector_encoder.scoring import mean_colbert_scores

from gpte.data.training import TrainingExample, read_training_data
from gpte.models.embedder import Embedder
from gpte.models.multivector import MultiVectorEncoder, load_multivector_encoder
from gpte.train.collator import MultiVectorCollator
from gpte.train.config import TrainingConfig
from gpte.train.losses import TrainingBatch, build_loss
from gpte.train.losses.gradcache import _split
from gpte.train.losses.multivector import cat_rows
from gpte.train.trainer import train

PROMPTS = {"query": "[Q] ", "document": "[D] "}
COLBERT = {
    "prompts": PROMPTS,
    "query_expansion": {"length": 12, "strategy": "fixed"},
    "skiplist": list(string.punctuation),
    "document_length": 24,
}
ROWS = [
    ("what is a wing stall?", "A stall happens when the wing exceeds its critical angle.", "Heat flows.", "Yes!"),
    ("heat transfer", "heat flows through the plate by conduction, then convection", "a wing, stalled", "The plate."),
    ("supersonic flow over bodies", "shock waves form", "boundary layers thicken along plates", "?"),
    ("boundary layer", "the boundary layer thickens along the flat plate; it separates", "shock waves", "heat"),
    ("a", "flow over a flat plate " * 4, "wing", "conduction and convection of heat in solids"),
]
TEACHER = torch.tensor([[9.0, 2.5, 1.0], [7.5, 3.0, 4.0], [6.0, 5.5, 0.5], [8.0, 1.0, 2.0], [3.0, 2.0, 2.5]])
PAIRS = [
    ("wing stall", "a stall happens when the wing exceeds the critical angle of attack"),
    ("heat transfer", "heat flows through the plate by conduction"),
    ("supersonic flow", "shock waves form in supersonic flow over the body"),
    ("boundary layer", "the boundary layer thickens along the flat plate"),
]


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    """similarity -> (gpte model, sentence-transformers model of its saved folder), both in eval mode."""
    cache: dict[str, tuple[MultiVectorEncoder, STMultiVectorEncoder]] = {}

    def get(similarity: str = "maxsim") -> tuple[MultiVectorEncoder, STMultiVectorEncoder]:
        if similarity not in cache:
            ours = load_multivector_encoder(
                tiny_models["bert"], dimension=16, device="cpu", similarity=similarity, **COLBERT
            )
            folder = ours.save(tmp_path_factory.mktemp("mv") / similarity)
            theirs = STMultiVectorEncoder(str(folder), device="cpu")
            cache[similarity] = (ours.eval(), theirs.eval())  # dropout off: both see the same network
        return cache[similarity]

    return get


def _batch(model: MultiVectorEncoder, columns: int, scores: torch.Tensor | None = None) -> TrainingBatch:
    rows = [row[:columns] for row in ROWS]
    values = [None] * len(rows) if scores is None else [tuple(s) if scores.ndim == 2 else s for s in scores.tolist()]
    return MultiVectorCollator(model)([TrainingExample(row, score) for row, score in zip(rows, values)])


def _st_features(model: STMultiVectorEncoder, columns: int) -> list[dict]:
    """The columns as sentence-transformers' MultiVectorEncoderDataCollator makes them (training prompts = the
    model's, as ``args.prompts``)."""
    features = []
    for column in range(columns):
        task = "query" if column == 0 else "document"
        column_features = model.preprocess([row[column] for row in ROWS], prompt=PROMPTS[task], task=task)
        features.append({**column_features, "task": task})
    return features


def _gradients(model: torch.nn.Module, value: torch.Tensor) -> list[torch.Tensor | None]:
    model.zero_grad()
    value.backward()
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def _close(value: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal to 1e-6, relative where the loss exceeds 1 (a MarginMSE of ~30 differs by one float32 step, 1e-6)."""
    return abs(value.item() - expected.item()) <= 1e-6 * max(abs(expected.item()), 1.0)


def _max_difference(ours: list, theirs: list) -> float:
    """The largest gradient difference, relative to the largest gradient where that exceeds 1 (float32 rounding
    scales with it: at temperature 0.05 gradients reach ~8, and sentence-transformers' merged and per-column
    forwards of the same loss differ by 5.7e-6 there)."""
    assert [g is None for g in ours] == [g is None for g in theirs]
    largest = max(b.abs().max().item() for b in theirs if b is not None)
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs) if a is not None) / max(largest, 1.0)


ST_CASES = {
    "infonce-pairs": ({"name": "colbert_infonce"}, 2, None, st_losses.MultiVectorMultipleNegativesRankingLoss),
    "infonce-hard-negatives": (
        {"name": "colbert_infonce"},
        4,
        None,
        st_losses.MultiVectorMultipleNegativesRankingLoss,
    ),
    "infonce-temperature": (
        {"name": "colbert_infonce", "temperature": 0.05},
        3,
        None,
        partial(st_losses.MultiVectorMultipleNegativesRankingLoss, scale=20.0),
    ),
    "infonce-meanmaxsim-option": (
        {"name": "colbert_infonce", "similarity": "meanmaxsim"},
        3,
        None,
        partial(st_losses.MultiVectorMultipleNegativesRankingLoss, similarity_fct=mean_colbert_scores),
    ),
    "kl": (
        {"name": "colbert_kl_distillation", "temperature": 2.0},
        3,
        TEACHER[:, :2],
        partial(st_losses.MultiVectorDistillKLDivLoss, temperature=2.0),
    ),
    "kl-teacher-temperature": (
        {"name": "colbert_kl_distillation", "temperature": 1.0, "teacher_temperature": 0.5},
        4,
        TEACHER,
        partial(st_losses.MultiVectorDistillKLDivLoss, teacher_temperature=0.5),
    ),
    "margin-mse-one-margin": (
        {"name": "colbert_margin_mse"},
        3,
        TEACHER[:, 0] - TEACHER[:, 1],
        st_losses.MultiVectorMarginMSELoss,
    ),
    "margin-mse-raw-scores": ({"name": "colbert_margin_mse"}, 4, TEACHER, st_losses.MultiVectorMarginMSELoss),
    "margin-mse-margins": (
        {"name": "colbert_margin_mse"},
        4,
        TEACHER[:, :1] - TEACHER[:, 1:],
        st_losses.MultiVectorMarginMSELoss,
    ),
}


@pytest.mark.parametrize("similarity", ["maxsim", "meanmaxsim"])
@pytest.mark.parametrize("case", list(ST_CASES))
def test_losses_equal_sentence_transformers(models, case, similarity):
    spec, columns, scores, st_loss = ST_CASES[case]
    ours, theirs = models(similarity)
    batch = _batch(ours, columns, scores)
    for column, features in zip(batch.features, _st_features(theirs, columns)):
        assert torch.equal(column.tokens.input_ids, features["input_ids"])  # same tokens, markers, expansion
    value = build_loss(spec, ours)(batch)
    expected = st_loss(theirs)(_st_features(theirs, columns), scores)
    assert _close(value, expected)
    assert _max_difference(_gradients(ours, value), _gradients(theirs, expected)) <= 1e-6


@pytest.mark.parametrize(
    ("spec", "columns", "scores"),
    [
        ({"name": "colbert_infonce"}, 4, None),
        ({"name": "colbert_kl_distillation"}, 4, TEACHER),
        ({"name": "colbert_margin_mse"}, 4, TEACHER),
    ],
)
def test_gradcache_gives_the_full_batch_loss_and_gradients(models, spec, columns, scores):
    model, _ = models()
    batch = _batch(model, columns, scores)  # 5 rows: mini-batches of 2, 2 and 1, each padded to its own width
    full = build_loss(spec, model)(batch)
    cached = build_loss({**spec, "gradcache": {"mini_batch_size": 2}}, model)(batch)
    assert _close(cached, full)
    assert _max_difference(_gradients(model, cached), _gradients(model, full)) <= 1e-6


def test_gradcache_equals_sentence_transformers_cached_loss(models):
    ours, theirs = models()
    cached = build_loss({"name": "colbert_infonce", "gradcache": {"mini_batch_size": 2}}, ours)(_batch(ours, 3))
    st_loss = st_losses.CachedMultiVectorMultipleNegativesRankingLoss(theirs, mini_batch_size=2)
    expected = st_loss(_st_features(theirs, 3))
    assert _close(cached, expected)
    assert _max_difference(_gradients(ours, cached), _gradients(theirs, expected)) <= 1e-6


def test_gradcache_replays_dropout_exactly(tiny_models):
    """With dropout on, the replay must see the masks of the cached pass: the gradient then equals that of the loss
    on the token vectors the first pass made."""
    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT).train()
    batch = _batch(model, 3)
    loss = build_loss({"name": "colbert_infonce", "gradcache": {"mini_batch_size": 2}}, model)
    torch.manual_seed(5)
    cached_value = loss(batch)
    cached = _gradients(model, cached_value)
    torch.manual_seed(5)
    columns = [cat_rows([model(chunk) for chunk in _split(features, 2)]) for features in batch.features]
    reference = loss.base.compute(columns, batch)
    assert _close(cached_value, reference)
    assert _max_difference(cached, _gradients(model, reference)) <= 1e-6


# ----------------------------------------------------------------- recipes and the trainer


def _write_pairs(folder, repeat: int = 4):
    path = folder / "pairs.jsonl"
    rows = [{"query": query, "positive": text} for query, text in PAIRS] * repeat
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _pair_loss(model: MultiVectorEncoder) -> float:
    batch = MultiVectorCollator(model)([TrainingExample(pair) for pair in PAIRS])
    with torch.no_grad():
        return build_loss("colbert_infonce", model.eval())(batch).item()


def test_a_multivector_recipe_learns_and_its_folder_equals_sentence_transformers(tiny_models, tmp_path):
    from gpte.train.recipe import load_recipe, run_recipe

    _write_pairs(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"kind: multivector\nmodel: {tiny_models['bert']}\noutput: runs\nstages:\n"
        "  - name: colbert\n"
        "    data: [{path: pairs.jsonl, columns: [query, positive]}]\n"
        "    loss: {name: colbert_infonce, gradcache: {mini_batch_size: 2}}\n"
        "    model_options: {dimension: 16, prompts: {query: '[Q] ', document: '[D] '}, skiplist: punctuation,\n"
        "                    query_expansion: {length: 12}}\n"
        "    training: {epochs: 4, batch_size: 4, learning_rate: 0.002, warmup_ratio: 0}\n",
        encoding="utf-8",
    )
    (folder,) = run_recipe(load_recipe(recipe))
    trained = load_multivector_encoder(folder, device="cpu")
    assert trained.skiplist == list(string.punctuation) and trained.query_expansion.length == 12
    untrained = load_multivector_encoder(
        tiny_models["bert"], dimension=16, device="cpu", **{**COLBERT, "document_length": None}
    )
    assert _pair_loss(trained) < _pair_loss(untrained) - 0.1
    peer = STMultiVectorEncoder(str(folder), device="cpu")
    texts = [text for pair in PAIRS for text in pair]
    for role, encode in (("query", peer.encode_query), ("document", peer.encode_document)):
        expected = encode(texts, convert_to_numpy=True)
        vectors = trained.encode(texts, role=role)
        for i, theirs in enumerate(expected):
            np.testing.assert_allclose(vectors[i], theirs, atol=1e-5)
    assert "colbert_infonce" in (folder / "README.md").read_text(encoding="utf-8")


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(tiny_models, tmp_path):
    data = read_training_data(_write_pairs(tmp_path), columns=["query", "positive"])
    config = TrainingConfig(max_steps=4, batch_size=4, learning_rate=1e-3, save_steps=2, warmup_ratio=0)

    def run() -> dict[str, torch.Tensor]:
        model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)
        result = train(model, build_loss("colbert_infonce", model), [data], config, tmp_path / "run")
        assert result.global_step == 4
        return {name: value.clone() for name, value in model.state_dict().items()}

    uninterrupted = run()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "checkpoint-4")  # as if stopped after step 2's checkpoint
    (tmp_path / "run" / "logs.csv").unlink()
    resumed = run()
    assert max((uninterrupted[k] - resumed[k]).abs().max().item() for k in uninterrupted) <= 1e-6
    logged_steps = {line.split(",")[0] for line in (tmp_path / "run" / "logs.csv").read_text().splitlines()[1:]}
    assert "1" not in logged_steps  # the second run started at step 3


def test_activation_checkpointing_trains_every_layer(tiny_models, tmp_path):
    data = read_training_data(_write_pairs(tmp_path), columns=["query", "positive"])
    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    config = TrainingConfig(max_steps=1, batch_size=4, learning_rate=1e-3, warmup_ratio=0, gradient_checkpointing=True)
    train(model, build_loss("colbert_infonce", model), [data], config, tmp_path / "run")
    after = model.state_dict()
    for name in ("backbone.model.embeddings.word_embeddings.weight", "projection.weight"):
        assert not torch.equal(before[name], after[name]), name


# ----------------------------------------------------------------- hostile inputs


def test_a_multivector_loss_refuses_a_single_vector_model_and_the_reverse(tiny_models, models):
    embedder = Embedder.load(tiny_models["bert"], device="cpu")
    with pytest.raises(TypeError, match="loss 'colbert_infonce' trains a multi-vector model .*got Embedder"):
        build_loss("colbert_infonce", embedder)
    model, _ = models()
    for name in ("infonce", "splade", "margin_mse"):
        with pytest.raises(
            TypeError, match=f"loss '{name}' trains one vector per text.*colbert_infonce, colbert_kl_distillation"
        ):
            build_loss(name, model)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "colbert_infonce", "scale": 20}, "unknown option\\(s\\) scale; allowed: temperature, similarity"),
        ({"name": "colbert_infonce", "similarity": "cosine"}, "unknown similarity 'cosine'; choose one of: maxsim, "),
        ({"name": "colbert_infonce", "temperature": 0}, "temperature must be a positive number, got 0"),
        ({"name": "colbert_kl_distillation", "teacher_temperature": -1}, "teacher_temperature must be a positive"),
        (
            {"name": "colbert_kl_distillation", "normalize": True},
            "allowed: temperature, teacher_temperature, similarity",
        ),
        (
            {"name": "colbert_infonce", "matryoshka": {"dims": [8]}},
            "matryoshka cannot wrap loss 'colbert_infonce'; it takes: gradcache",
        ),
        ({"name": "colbert_infonce", "gradcache": {"mini_batch_size": 0}}, "mini_batch_size must be a positive"),
    ],
)
def test_bad_loss_options_are_named(models, spec, message):
    model, _ = models()
    with pytest.raises(ValueError, match=message):
        build_loss(spec, model)


def test_bad_teacher_scores_and_columns_are_named(models, tmp_path):
    model, _ = models()
    with pytest.raises(ValueError, match="one teacher score per document \\(2\\).*got \\(5, 3\\)"):
        build_loss("colbert_kl_distillation", model)(_batch(model, 3, TEACHER))
    with pytest.raises(ValueError, match="margins \\(5, 2\\), raw teacher scores \\(5, 3\\); got \\(5,\\)"):
        build_loss("colbert_margin_mse", model)(_batch(model, 4, TEACHER[:, 0]))
    with pytest.raises(
        ValueError, match="loss 'colbert_kl_distillation' takes at least 3 text columns, the data has 2"
    ):
        build_loss("colbert_kl_distillation", model)(_batch(model, 2, TEACHER[:, :1]))
    with pytest.raises(ValueError, match="loss 'colbert_margin_mse' needs a score for each row"):
        build_loss("colbert_margin_mse", model)(_batch(model, 3))
    data = read_training_data(_write_pairs(tmp_path), columns=["query", "positive"])
    with pytest.raises(ValueError, match="loss 'colbert_kl_distillation' takes at least 3 text columns"):
        train(model, build_loss("colbert_kl_distillation", model), [data], TrainingConfig(batch_size=4), tmp_path)
    with pytest.raises(ValueError, match="training a multi-vector model does not support lora"):
        train(
            model, build_loss("colbert_infonce", model), [data], TrainingConfig(batch_size=4, lora={"r": 4}), tmp_path
        )
    with pytest.raises(ValueError, match="a multi-vector model is trained with its role prompts"):
        MultiVectorCollator(model)([TrainingExample(PAIRS[0], instruction="retrieve")])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{pooling: cls}", "unknown key\\(s\\) pooling; allowed: dimension, max_seq_length, query_length"),
        ("{skiplist: commas}", "skiplist must be a list of tokens or one of: punctuation; got 'commas'"),
        ("{similarity: cosine}", "unknown multi-vector similarity 'cosine'"),
    ],
)
def test_multivector_recipes_are_checked(tiny_models, tmp_path, options, message):
    from gpte.train.recipe import load_recipe, prepare

    _write_pairs(tmp_path)
    (tmp_path / "recipe.yaml").write_text(
        f"kind: multivector\nmodel: {tiny_models['bert']}\nstages:\n"
        f"  - data: [pairs.jsonl]\n    loss: colbert_infonce\n    model_options: {options}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=message):
        prepare(load_recipe(tmp_path / "recipe.yaml"))


def test_the_example_recipe_is_valid():
    from gpte.train.recipe import _multivector_options, load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "examples" / "recipe-multivector.yaml")
    (stage,) = recipe.stages
    assert recipe.kind == "multivector" and stage.loss["name"] == "colbert_infonce"
    options = _multivector_options(stage.model_options)
    assert options["dimension"] == 128 and options["skiplist"] == list(string.punctuation)
    assert options["prompts"] == PROMPTS and options["query_expansion"]["length"] == 32


def test_evaluation_during_training_scores_by_maxsim_and_keeps_the_best_checkpoint(tiny_models, shared_data, tmp_path):
    from gpte.evaluate import evaluate
    from gpte.evaluate.tasks import load_task

    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", columns=["sentence1", "sentence2"], limit=32)
    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)
    task = load_task(shared_data / "sts/stsb-en")
    config = TrainingConfig(max_steps=4, batch_size=8, learning_rate=5e-3, eval_steps=2, warmup_ratio=0)
    result = train(model, build_loss("colbert_infonce", model), [data], config, tmp_path / "run", eval_tasks=[task])
    assert len(result.eval_history) == 2 and result.best_score == max(e["eval_score"] for e in result.eval_history)
    best = load_multivector_encoder(result.best_checkpoint, device="cpu")
    run = evaluate(best, [task])
    (final,) = run.results.values()
    assert final["main_score"] == "spearman"  # of MaxSim scores: a multi-vector model has no cosine
    assert 100 * final["main_score_value"] == pytest.approx(
        result.best_score, abs=1e-4
    )  # the score of the kept checkpoint
