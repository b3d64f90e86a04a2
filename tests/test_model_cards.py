"""Model cards (README.md) written by every save: the model's settings from ``info()``, how it was made (training,
merging, whitening, static distillation) and gpte's scores; folders still load in sentence-transformers with the
same vectors. Whitening leaves the model it was given unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import SENTENCES
from transformers import AutoTokenizer

from gpte.analysis.whitening import add_whitening, fit_whitening
from gpte.data.training import read_training_data
from gpte.models.embedder import Embedder
from gpte.models.model_card import CardNotes, hub_id, model_card
from gpte.models.static import StaticEmbedder
from gpte.train.config import TrainingConfig
from gpte.train.merging import merge_models
from gpte.train.recipe import Stage, card_notes
from gpte.train.trainer import TrainResult


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def _rows(card: str) -> dict[str, str]:
    """The two-column table rows of a card: first cell -> second cell."""
    cells = [line.strip("|").split(" | ") for line in card.splitlines() if line.startswith("| ")]
    return {cell[0].strip(): cell[1].strip() for cell in cells if len(cell) == 2}


def test_saved_model_card_describes_the_model_and_the_folder_loads_in_sentence_transformers(tiny_models, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    embedder = Embedder.load(
        tiny_models["bert"],
        device="cpu",
        pooling="cls",
        normalize=True,
        max_seq_length=64,
        prompts={"query": "query: ", "document": "passage: "},
        default_prompt="query",
    )
    folder = embedder.save(tmp_path / "tiny-bert")
    card = (folder / "README.md").read_text()
    assert _front_matter(card) == {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["gpte", "sentence-transformers", "feature-extraction", "sentence-similarity"],
    }  # no base_model: a model loaded from a local folder names none
    rows = _rows(card)
    assert rows["dimension"] == "32" and rows["pooling"] == "`cls` (include_prompt=True)"
    assert rows["max sequence length"] == "64 tokens" and rows["normalized"] == "yes" and rows["similarity"] == "cosine"
    assert rows["`query` (default)"] == "`query: {text}`" and rows["`document`"] == "`passage: {text}`"
    assert card.startswith("---") and "# tiny-bert\n" in card and 'prompt_name="query"' in card
    st_model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    for role in ("query", "document"):
        np.testing.assert_allclose(
            st_model.encode(SENTENCES, prompt_name=role), embedder.encode(SENTENCES, role=role), atol=1e-5
        )


def test_card_renders_training_data_losses_settings_results_and_hub_base_models():
    info = {"name": "m", "dimension": 8, "pooling": {"name": "mean"}, "similarity": "dot", "max_seq_length": 16}
    notes = CardNotes(
        base_models=("all-MiniLM-L6-v2", "/no/such/folder"),
        made=("Fine-tuned.",),
        training_data=("`pairs.jsonl`: 3 rows",),
        losses=("`infonce`",),
        training_settings={"epochs": 2},
        results={"sts/stsb-en": 0.82034, "retrieval/scifact": 0.6},
    )
    card = model_card(info, notes, title="m")
    assert _front_matter(card)["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"  # the folder is left out
    assert "- Made from `all-MiniLM-L6-v2`, `/no/such/folder`.\n- Fine-tuned." in card
    assert "### Data\n\n- `pairs.jsonl`: 3 rows" in card and "### Losses\n\n- `infonce`" in card
    assert "```yaml\nepochs: 2\n```" in card
    assert _rows(card)["sts/stsb-en"] == "82.03" and _rows(card)["retrieval/scifact"] == "60.00"
    assert "## Prompts" not in card and _rows(card)["similarity"] == "dot" and "**Note:**" not in card
    warned = model_card(info, notes, title="m", unsupported=["prompt echo", "pooling span"])
    assert "**Note:** sentence-transformers does not reproduce prompt echo, pooling span: use gpte" in warned
    assert [hub_id(name) for name in ("BAAI/bge-small-en-v1.5", "bert-base-uncased", "runs/a/model")] == [
        "BAAI/bge-small-en-v1.5",
        "bert-base-uncased",
        None,
    ]


def test_recipe_card_notes_name_the_start_data_loss_settings_and_scores(tiny_models, tmp_path):
    rows = [{"anchor": f"question {i}", "positive": f"answer {i}"} for i in range(5)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    stage = Stage(
        "weak",
        None,
        [],
        {"name": "infonce", "temperature": 0.05},
        TrainingConfig(epochs=3),
        sources=[read_training_data(tmp_path / "pairs.jsonl")],
    )
    model = Embedder.load(tiny_models["bert"], device="cpu")
    model.card_notes = card_notes(model, stage, TrainResult(12, 0.25, None, None, []), {"sts/toy": 0.5})
    card = (model.save(tmp_path / "trained") / "README.md").read_text()
    assert f"- Made from `{tiny_models['bert']}`." in card
    assert "(recipe stage `weak`): 12 steps, final training loss 0.2500." in card
    assert f"- `{tmp_path / 'pairs.jsonl'}`: 5 rows, columns anchor, positive" in card
    assert '- `{"name": "infonce", "temperature": 0.05}`' in card and "\nepochs: 3\n" in card
    assert _rows(card)["sts/toy"] == "50.00"


def test_merged_model_card_names_the_merge_and_loads_in_sentence_transformers(tiny_models, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    a = Embedder.load(tiny_models["bert"], device="cpu")
    b = Embedder.load(tiny_models["bert"], device="cpu")
    for parameter in b.parameters():
        parameter.data.mul_(0.9)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    merged = merge_models([tmp_path / "a", tmp_path / "b"], "slerp", t=0.25)
    folder = merged.save(tmp_path / "merged")
    card = (folder / "README.md").read_text()
    assert f"- Made from `{tmp_path / 'a'}`, `{tmp_path / 'b'}`." in card
    assert "Merged by spherical interpolation (slerp)" in card and "at t = 0.25." in card
    st_vectors = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(st_vectors, merged.encode(SENTENCES), atol=1e-5)


def test_whitened_model_is_new_its_card_says_so_and_the_source_model_is_unchanged(tiny_models, tmp_path):
    embedder = Embedder.load(tiny_models["bert"], device="cpu", normalize=True)
    info, vectors = embedder.info(), embedder.encode(SENTENCES)
    whitening = fit_whitening(embedder.encode(SENTENCES * 2 + ["one more", "and another"], normalize=False), 8)
    whitened = add_whitening(embedder, whitening)
    assert whitened.dimension == 8 and whitened is not embedder
    assert embedder.info() == info and np.array_equal(embedder.encode(SENTENCES), vectors)
    card = (whitened.save(tmp_path / "whitened") / "README.md").read_text()
    assert f"- Made from `{tiny_models['bert']}`." in card and "keeping 8 of 32 dimensions" in card
    assert _rows(card)["dense layer 1"] == "32 -> 8, Identity" and _rows(card)["dimension"] == "8"


def test_static_model_card_says_how_it_was_distilled_and_names_no_sentence_transformers(tiny_models, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    table = np.random.default_rng(0).standard_normal((len(tokenizer), 8)).astype(np.float32)
    config = {"source": "minilm", "pca_dims": 8, "sif_coefficient": 1e-4, "normalize": True, "similarity": "cosine"}
    static = StaticEmbedder(table, tokenizer, config)
    static.card_notes = CardNotes().derived("minilm", "Distilled into a static token table.")
    card = (static.save(tmp_path / "static") / "README.md").read_text()
    assert "library_name" not in _front_matter(card) and "static-embeddings" in _front_matter(card)["tags"]
    assert "- Made from `minilm`.\n- Distilled into a static token table." in card
    rows = _rows(card)
    assert rows["dimension"] == "8" and rows["PCA dimensions"] == "8" and rows["SIF weighting a"] == "0.0001"
    assert rows["vocabulary"] == f"{len(tokenizer):,} tokens" and rows["distilled from"] == "`minilm`"
    assert rows["max sequence length"] == "none (every token is read)"
    assert "StaticEmbedder.load" in card and "SentenceTransformer" not in card
