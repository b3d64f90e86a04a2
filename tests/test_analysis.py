"""gpte.analysis on synthetic vectors and tiny random models: exact geometry, whitening, views, inversion
metrics and probe, bias statistics, interpretability, and the report/CLI end to end."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from gpte.analysis import bias, geometry
from gpte.analysis.analyze import SECTIONS, Analysis, inputs_from_tasks
from gpte.analysis.bias_sets import AssociationTest
from gpte.analysis.efficiency import matryoshka_dimensions, score_transforms
from gpte.analysis.interpret import explain_similarity, lm_head_tokens
from gpte.analysis.inversion import InversionProbe, ProbeConfig, inversion_scores, random_like, token_f1
from gpte.analysis.plots import project_2d
from gpte.analysis.views import CachedEncoder, gaussian_noise, identity, precision, truncate
from gpte.analysis.whitening import fit_whitening, whiten_model
from gpte.cli import main
from gpte.evaluate import evaluate, load_task
from gpte.models.embedder import Embedder
from gpte.models.postprocess import quantize

STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion.", 4.2),
    ("A dog runs in the park.", "The stock market fell today.", 0.2),
    ("Two kids play soccer.", "Children are playing football.", 4.0),
    ("A cat sleeps on the sofa.", "A plane lands at the airport.", 0.0),
    ("The chef cooks pasta.", "A cook is making noodles.", 3.6),
    ("A girl reads a book.", "The weather is sunny.", 0.4),
    ("People dance at a party.", "A crowd is dancing.", 3.9),
]


def _correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 3.0


# ----------------------------------------------------------------- geometry


def test_anisotropy_equals_the_mean_over_distinct_pairs():
    vectors = np.random.default_rng(1).standard_normal((7, 5)) + 0.5
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    brute = np.mean([units[i] @ units[j] for i, j in itertools.permutations(range(7), 2)])
    assert geometry.anisotropy(vectors) == pytest.approx(brute, abs=1e-12)
    assert geometry.anisotropy(np.ones((4, 3))) == pytest.approx(1.0)


def test_effective_rank_and_top_variance_of_k_equal_directions():
    k = 3
    vectors = np.vstack([np.eye(6)[:k], -np.eye(6)[:k]])  # centred, k equal singular values
    assert geometry.effective_rank(vectors) == pytest.approx(k)
    assert geometry.top_variance(vectors, 1) == pytest.approx(1 / k)
    shape = geometry.describe(vectors, top=(1, 2))
    assert shape.top_variance == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_geometry_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 vectors"):
        geometry.anisotropy(np.ones((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        geometry.anisotropy(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        geometry.describe(np.array([[1.0, np.nan], [0.0, 1.0]]))


# ----------------------------------------------------------------- whitening


def test_whitening_gives_zero_mean_identity_covariance_and_near_zero_cosine():
    vectors = _correlated(4000, 8)
    assert geometry.anisotropy(vectors) > 0.5
    whitened = fit_whitening(vectors).apply(vectors).astype(np.float64)
    np.testing.assert_allclose(whitened.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(8), atol=1e-4)
    assert abs(geometry.anisotropy(whitened)) < 0.01


def test_whitening_reduces_dimensions_and_its_dense_step_computes_the_same_map():
    vectors = _correlated(300, 6)
    whitening = fit_whitening(vectors, n_components=4)
    assert whitening.matrix.shape == (6, 4)
    dense = whitening.as_dense()
    with torch.no_grad():
        through_dense = dense(torch.from_numpy(vectors.astype(np.float32))).numpy()
    np.testing.assert_allclose(through_dense, whitening.apply(vectors), atol=1e-3)
    with pytest.raises(ValueError, match="n_components must be an integer from 1 to the dimension 6"):
        fit_whitening(vectors, n_components=7)


def test_whitened_model_saves_and_gives_the_same_vectors_in_gpte_and_sentence_transformers(tiny_models, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    embedder = Embedder.load(tiny_models["bert"], device="cpu", normalize=True)
    corpus = [a for a, _, _ in STS_ROWS] + [b for _, b, _ in STS_ROWS] + ["one more text", "and another sentence here"]
    raw = embedder.encode(corpus, normalize=False)
    info = embedder.info()
    whitened, whitening = whiten_model(embedder, corpus, n_components=16)
    expected = whitening.apply(raw)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(whitened.encode(corpus), expected, atol=1e-4)
    assert whitened.dimension == 16
    assert embedder.info() == info and np.array_equal(embedder.encode(corpus, normalize=False), raw)  # unchanged
    whitened.save(tmp_path / "whitened")
    np.testing.assert_allclose(Embedder.load(tmp_path / "whitened", device="cpu").encode(corpus), expected, atol=1e-4)
    st_vectors = sentence_transformers.SentenceTransformer(str(tmp_path / "whitened"), device="cpu").encode(corpus)
    np.testing.assert_allclose(st_vectors, expected, atol=1e-4)


# ----------------------------------------------------------------- views and curves


def test_views_truncate_quantize_and_add_noise():
    vectors = np.random.default_rng(2).standard_normal((5, 16)).astype(np.float32)
    cut = truncate(4)(vectors)
    np.testing.assert_allclose(cut, vectors[:, :4] / np.linalg.norm(vectors[:, :4], axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(precision("binary")(vectors), np.where(vectors > 0, 0.25, -0.25))
    assert np.allclose(np.linalg.norm(precision("int8")(vectors), axis=1), 1)
    ranges = np.vstack((vectors.min(axis=0), vectors.max(axis=0))) * 2
    codes = quantize(vectors[:1], "int8", ranges).astype(np.float32)  # one vector: only calibrated ranges allow it
    np.testing.assert_allclose(precision("int8", ranges)(vectors[:1]), codes / np.linalg.norm(codes), rtol=1e-6)
    noisy = gaussian_noise(0.5, seed=3)(np.vstack([vectors, vectors[:1]]))
    np.testing.assert_array_equal(noisy[0], noisy[-1])  # the same vector gets the same noise
    assert not np.allclose(noisy[0] - vectors[0], noisy[1] - vectors[1])  # different vectors, independent noise
    np.testing.assert_allclose(gaussian_noise(0.0)(vectors), vectors)
    with pytest.raises(ValueError, match="unknown precision"):
        precision("int4")
    with pytest.raises(ValueError, match="cannot keep 32 dimensions"):
        truncate(32)(vectors)
    assert matryoshka_dimensions(384) == [16, 32, 64, 128, 256, 384]


def _sts_task(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(
        json.dumps({"task_type": "STS", "main_score": "cosine_spearman", "score_range": [0, 5]})
    )
    lines = [json.dumps({"sentence1": a, "sentence2": b, "score": s}) for a, b, s in STS_ROWS]
    for split in ("test", "train"):
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_identity_and_full_truncation_views_score_like_the_model(tiny_models, tmp_path):
    embedder = Embedder.load(tiny_models["bert"], device="cpu")
    task = load_task(_sts_task(tmp_path / "sts"), "sts")
    reference = evaluate(embedder, [task]).results["sts"]["main_score_value"]
    scores = score_transforms(
        CachedEncoder(embedder),
        {"same": identity, "all dims": truncate(embedder.dimension), "half": truncate(16)},
        [task],
    )
    assert scores["same"]["sts"] == pytest.approx(reference, abs=1e-9)
    assert scores["all dims"]["sts"] == pytest.approx(reference, abs=1e-9)


# ----------------------------------------------------------------- inversion


def test_inversion_metrics_by_hand():
    assert token_f1("a man plays", "A man is playing.") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("dog", "cat") == 0.0
    scores = inversion_scores(["A man is playing.", "a cat"], ["a man is playing", "the dog"])
    assert scores.exact_match == 0.5 and scores.token_f1 == pytest.approx(0.5)
    assert inversion_scores(["the same words here ."], ["The same words here."]).bleu == pytest.approx(1.0)
    with pytest.raises(ValueError, match="as many predictions as references"):
        inversion_scores(["a"], [])


def test_probe_learns_to_write_sentences_back_and_random_vectors_keep_norms(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    sentences = ["a man plays a guitar", "the cat sleeps", "children eat apples in the garden", "rain falls"]
    vectors = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)
    config = ProbeConfig(layers=1, width=32, heads=2, max_tokens=8, epochs=150, batch_size=4, learning_rate=1e-2)
    state = torch.random.get_rng_state()
    probe = InversionProbe.train_on(vectors, sentences, tokenizer, config, show_progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded without touching the caller's random stream
    assert probe.generate(vectors) == sentences
    assert probe.generate(vectors[:, :6])  # truncated vectors are zero-padded, not refused
    baseline = random_like(vectors * 3)
    np.testing.assert_allclose(np.linalg.norm(baseline, axis=1), np.linalg.norm(vectors * 3, axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="4 embeddings but 3 texts"):
        InversionProbe.train_on(vectors, sentences[:3], tokenizer, config)
    with pytest.raises(ValueError, match="width 30 must be a multiple of heads 4"):
        ProbeConfig(width=30).check()


# ----------------------------------------------------------------- bias


def _toy_embed(directions: dict[str, np.ndarray]):
    """Texts -> the direction of the first known word in them (templates then carry no signal)."""

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack(
            [
                next(v for w, v in directions.items() if w in text.split(" ")[-1].strip(".") or w == text.split(" ")[0])
                for text in texts
            ]
        )

    return embed


def test_association_effect_size_and_exact_permutation_p_by_hand():
    rng = np.random.default_rng(4)
    words = {
        w: 0.3 * rng.standard_normal(6) + np.eye(6)[0 if w[0] in "xa" else 1]
        for w in ["x1", "x2", "x3", "y1", "y2", "y3", "a1", "a2", "b1", "b2"]
    }  # X near A, Y near B
    test = AssociationTest("toy", ("x1", "x2", "x3"), ("y1", "y2", "y3"), ("a1", "a2"), ("b1", "b2"))
    result = bias.association_test(_toy_embed(words), test, templates=("This is {}.",))
    units = {w: v / np.linalg.norm(v) for w, v in words.items()}
    s = {
        w: np.mean([units[w] @ units[a] for a in ("a1", "a2")]) - np.mean([units[w] @ units[b] for b in ("b1", "b2")])
        for w in ("x1", "x2", "x3", "y1", "y2", "y3")
    }
    values = np.array(list(s.values()))
    assert result.effect_size == pytest.approx((values[:3].mean() - values[3:].mean()) / values.std(ddof=1))
    observed = values[:3].sum() - values[3:].sum()
    partitions = [values[list(c)].sum() - np.delete(values, list(c)).sum() for c in itertools.combinations(range(6), 3)]
    assert result.p_value == pytest.approx(np.mean(np.array(partitions) >= observed - 1e-12))
    assert result.exact and result.effect_size > 1.5 and result.p_value == pytest.approx(1 / 20)


def test_association_errors_and_counterfactual_gap():
    with pytest.raises(ValueError, match="unknown association test 'weat99'; choose one of: weat1"):
        bias.association_test(lambda texts: np.ones((len(texts), 2)), "weat99")
    with pytest.raises(ValueError, match="same size"):
        bias.association_test(
            lambda texts: np.ones((len(texts), 2)), AssociationTest("t", ("a", "b"), ("c",), ("d", "e"), ("f", "g"))
        )

    def embed(texts):  # "He" answers lie nearer the query than "She" answers
        return np.array(
            [[1.0, 0.0] if t.startswith("Who") else [1.0, 0.2] if t.startswith("He") else [1.0, 0.5] for t in texts]
        )

    gap = bias.counterfactual_gap(embed, items=[str(i) for i in range(8)], permutations=2000)
    expected = 1 / np.hypot(1, 0.2) - 1 / np.hypot(1, 0.5)
    assert gap.mean_gap == pytest.approx(expected) and gap.p_value < 0.05


# ----------------------------------------------------------------- interpretability


def test_lm_head_tokens_are_the_softmax_of_the_pooled_state(tiny_models):
    embedder = Embedder.load(tiny_models["llama"], device="cpu")
    head = embedder.backbone.model.get_input_embeddings().weight
    top = lm_head_tokens(embedder, ["A man is playing a guitar."], k=3, output_embeddings=head)[0]
    probabilities = torch.softmax(
        torch.as_tensor(embedder.encode(["A man is playing a guitar."], normalize=False)) @ head.detach().T, -1
    )[0]
    values, ids = probabilities.topk(3)
    assert [t for t, _ in top] == [embedder.backbone.tokenizer.decode([i]) for i in ids.tolist()]
    assert [p for _, p in top] == pytest.approx(values.tolist())
    with pytest.raises(ValueError, match="does not tie its LM head"):
        lm_head_tokens(embedder, ["x"])
    with pytest.raises(ValueError, match="reads decoder LLM embedders"):
        lm_head_tokens(Embedder.load(tiny_models["bert"], device="cpu"), ["x"])


def test_explain_similarity_occlusion_and_neighbours(tiny_models):
    embedder = Embedder.load(tiny_models["bert"], device="cpu")
    a, b = "a man plays guitar", "a man is playing music"
    corpus = [x for row in STS_ROWS for x in row[:2]]
    explanation = explain_similarity(embedder, a, b, corpus, k=3)
    vectors = embedder.encode([a, b])
    assert explanation.similarity == pytest.approx(float(embedder.similarity(vectors[:1], vectors[1:])[0, 0]), abs=1e-6)
    without_guitar = embedder.encode(["a man plays"])
    drop = explanation.similarity - float(embedder.similarity(without_guitar, vectors[1:])[0, 0])
    assert dict(explanation.words_a)["guitar"] == pytest.approx(drop, abs=1e-6)
    assert len(explanation.neighbours_a) == 3 and set(explanation.shared_neighbours) <= {
        t for t, _ in explanation.neighbours_a
    }
    with pytest.raises(ValueError, match="at least one word"):
        explain_similarity(embedder, " ", b)


# ----------------------------------------------------------------- report and CLI


def _data_root(root: Path) -> Path:
    _sts_task(root / "sts" / "toy")
    labelled = root / "classification" / "toy"
    labelled.mkdir(parents=True)
    (labelled / "meta.json").write_text(json.dumps({"task_type": "Classification"}))
    rows = [
        {"text": text, "label": "pairs" if i % 2 else "first"}
        for i, text in enumerate(x for row in STS_ROWS for x in row[:2])
    ]
    (labelled / "test.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return root


def test_analysis_writes_every_section_figures_and_report_and_resumes(tiny_models, tmp_path, caplog):
    root = _data_root(tmp_path / "data")
    probe = ProbeConfig(layers=1, width=32, heads=2, max_tokens=12, epochs=2, batch_size=8)
    inputs = inputs_from_tasks(
        root,
        "sts/toy:train",
        ["sts/toy"],
        "classification/toy",
        "sts/toy",
        "sts/toy:train",
        "sts/toy",
        whiten_dims=8,
        probe=probe,
        adaptive_probe=True,
        save_whitened=tmp_path / "whitened",
    )
    embedder = Embedder.load(tiny_models["bert"], device="cpu")
    info, vectors = embedder.info(), embedder.encode(inputs.corpus)
    report = Analysis(embedder, inputs, tmp_path / "out").run()
    text = report.read_text()
    for title in (
        "Geometry",
        "Whitening",
        "Efficiency curves",
        "Inversion risk",
        "Bias",
        "Interpretability",
        "Figures",
    ):
        body = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert len(body.strip()) > 40, title
    for figure in ("matryoshka.png", "precision.png", "projection.png", "similarity_histogram.png"):
        path = tmp_path / "out" / figure
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        assert f"]({figure})" in text
    assert "token F1, retrained probe" in text  # the adaptive attacker's column
    projection = json.loads((tmp_path / "out" / "projection.json").read_text())  # the map's points, for a web page
    texts, labels = inputs.labelled
    assert set(projection) == {"model", "method", "points"}
    assert projection["model"] == embedder.name and projection["method"] == "pca"
    assert [(p["text"], p["label"]) for p in projection["points"]] == list(zip(texts, labels))
    expected = project_2d(embedder.encode(texts))
    assert np.allclose([[p["x"], p["y"]] for p in projection["points"]], expected, atol=1e-4)
    assert all(set(p) == {"x", "y", "text", "label"} and isinstance(p["x"], float) for p in projection["points"])
    assert "similar pairs (gold score ≥ 4 of 0–5 in sts/toy)" in text  # what positive and negative pairs are
    assert embedder.info() == info and np.array_equal(embedder.encode(inputs.corpus), vectors)  # never changed
    assert Embedder.load(tmp_path / "whitened", device="cpu").dimension == 8
    card = (tmp_path / "whitened" / "README.md").read_text()
    assert "keeping 8 of 32 dimensions" in card and "| sts/toy |" in card  # how it was made, its scores
    sections = {path.stem for path in (tmp_path / "out" / "sections").glob("*.json")}
    assert sections == set(SECTIONS)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gpte"):
        report = Analysis(embedder, inputs, tmp_path / "out").run(["bias", "geometry"])
    messages = [record.getMessage() for record in caplog.records if record.name == "gpte.analysis.analyze"]
    assert len(messages) == 2 and all(": kept " in message for message in messages)  # logged, not printed
    assert report.read_text() == text  # the report still gathers every finished section
    with pytest.raises(ValueError, match="unknown section.*choose from: geometry"):
        Analysis(embedder, inputs, tmp_path / "out").run(["geometr"])
    other = Embedder.load(tiny_models["bert"], device="cpu", pooling="cls")
    with pytest.raises(ValueError, match="made by another model or from other inputs"):
        Analysis(other, inputs, tmp_path / "out").run(["geometry"])


def test_cli_analyze_and_whiten(tiny_models, tmp_path, capsys):
    root = _data_root(tmp_path / "data")
    code = main(
        [
            "analyze",
            "--model",
            str(tiny_models["bert"]),
            "--data",
            str(root),
            "-o",
            str(tmp_path / "out"),
            "--sections",
            "geometry",
            "bias",
            "--corpus",
            "sts/toy",
            "--tasks",
            "sts/toy",
            "--labelled",
            "",
            "--pairs",
            "",
            "--inversion-test",
            "",
        ]
    )
    assert code == 0 and (tmp_path / "out" / "report.md").exists()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(x for row in STS_ROWS for x in row[:2]) + "\n")
    assert (
        main(["whiten", str(corpus), "--model", str(tiny_models["bert"]), "-o", str(tmp_path / "w"), "--dims", "4"])
        == 0
    )
    assert "mean pairwise cosine" in capsys.readouterr().out
    assert Embedder.load(tmp_path / "w", device="cpu").dimension == 4
    assert main(["analyze", "--data", str(root), "-o", str(tmp_path / "o2"), "--corpus", "nosuch"]) == 1
    assert "unknown task 'nosuch'" in capsys.readouterr().err
