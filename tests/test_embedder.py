"""The Embedder on tiny random models of every backbone family: loading, invariances, save/reload,
prompts, precisions and bad input."""

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import SENTENCES, TINY_KINDS

from gpte import Embedder, ModelLoadError
from gpte.models.pooling import POOLERS

DECODERS = ("llama", "qwen2", "mistral", "gpt2")


@pytest.fixture(scope="module")
def embedders(tiny_models):
    return {kind: Embedder.load(tiny_models[kind]) for kind in TINY_KINDS}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_family_loads_with_its_default_pooling(embedders, kind):
    embedder = embedders[kind]
    expected = ("decoder", "last") if kind in DECODERS else ("encoder-decoder" if kind == "t5" else "encoder", "mean")
    assert (embedder.backbone.kind, embedder.pooler.name) == expected
    vectors = embedder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 32) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_array_equal(vectors[0], vectors[4])  # duplicates encoded once
    assert embedder.encode_with_report(SENTENCES).report.n_unique == len(SENTENCES) - 1


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_vectors_do_not_depend_on_batching_or_order(embedders, kind):
    embedder = embedders[kind]
    reference = embedder.encode(SENTENCES, batch_size=32)
    for batch_size in (1, 2, 5):
        np.testing.assert_allclose(embedder.encode(SENTENCES, batch_size=batch_size), reference, atol=1e-5)
    np.testing.assert_allclose(embedder.encode(SENTENCES[::-1])[::-1], reference, atol=1e-5)
    alone = np.stack([embedder.encode(text) for text in SENTENCES])
    np.testing.assert_allclose(alone, reference, atol=1e-5)
    with_others = embedder.encode(
        SENTENCES + ["An extra, much longer sentence that changes the padding of the batch."] * 3
    )
    np.testing.assert_allclose(with_others[: len(SENTENCES)], reference, atol=1e-5)


@pytest.mark.parametrize("kind", DECODERS + ("t5",))
def test_vectors_do_not_depend_on_padding_side(tiny_models, embedders, kind):
    for pooling in ("last", "mean", "weighted_mean"):
        right = Embedder.load(tiny_models[kind], pooling=pooling).encode(SENTENCES, batch_size=3)
        left = Embedder.load(tiny_models[kind], pooling=pooling, padding_side="left").encode(SENTENCES, batch_size=3)
        np.testing.assert_allclose(left, right, atol=1e-5)


def test_multi_layer_asking_for_more_layers_than_the_model_has_is_refused(tiny_models):
    with pytest.raises(ValueError, match="asks for the top 4 layers but the model has 2"):
        Embedder.load(tiny_models["llama"], pooling="multi_layer")


@pytest.mark.parametrize("kind", ["roberta", "xlm-roberta", "mpnet"])
def test_offset_position_encoders_take_their_full_length(tiny_models, kind):
    embedder = Embedder.load(tiny_models[kind])
    positions = embedder.backbone.model.embeddings.position_embeddings  # 66, numbered from padding_idx + 1
    limit = positions.num_embeddings - positions.padding_idx - 1
    assert embedder.max_seq_length == limit == {"mpnet": 64}.get(kind, 65)  # MPNet fixes padding_idx at 1
    with pytest.warns(UserWarning, match=f"1 of 1 texts were longer than {limit} tokens"):
        assert np.isfinite(embedder.encode(["cat " * 200])).all()  # a longer input would overflow the table


def test_left_padding_is_refused_for_encoders(tiny_models):
    with pytest.raises(ValueError, match="encoders pad right"):
        Embedder.load(tiny_models["bert"], padding_side="left")


@pytest.mark.parametrize("pooling", sorted(POOLERS))
def test_every_pooling_runs_on_a_decoder_and_round_trips_through_save(tiny_models, tmp_path, pooling):
    prompt = "Rewrite the sentence: {text}, rewritten sentence: {text}" if pooling == "span_mean" else None
    spec = {"name": pooling, "layers": 2} if pooling == "multi_layer" else pooling
    embedder = Embedder.load(
        tiny_models["llama"],
        pooling=spec,
        prompts={"echo": prompt} if prompt else None,
        default_prompt="echo" if prompt else None,
    )
    vectors = embedder.encode(SENTENCES)
    assert np.isfinite(vectors).all() and vectors.shape == (len(SENTENCES), 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedder.save(tmp_path / "saved")
    reloaded = Embedder.load(tmp_path / "saved")
    assert reloaded.info()["pooling"] == embedder.info()["pooling"]
    np.testing.assert_allclose(reloaded.encode(SENTENCES), vectors, atol=1e-6)


def test_last_pooling_can_append_eos(tiny_models):
    plain = Embedder.load(tiny_models["llama"], pooling="last")
    with_eos = Embedder.load(tiny_models["llama"], pooling={"name": "last", "append_eos": True})
    eos = with_eos.backbone.tokenizer.eos_token_id
    assert (
        with_eos.tokenizer.tokenize(
            ["a cat"], suffix_ids=with_eos.pooler.suffix_ids(with_eos.backbone.tokenizer)
        ).input_ids[0][-1]
        == eos
    )
    assert not np.allclose(plain.encode(SENTENCES), with_eos.encode(SENTENCES))


def test_prompts_roles_and_exclusion(tiny_models, tmp_path):
    prompts = {"query": "query: ", "instruct": "Instruct: {task}\nQuery: {text}"}
    embedder = Embedder.load(tiny_models["bert"], prompts=prompts)
    query = embedder.encode(["a cat"], role="query")
    np.testing.assert_allclose(query, embedder.encode(["query: a cat"]), atol=1e-6)
    np.testing.assert_allclose(embedder.encode(["a cat"], role="document"), embedder.encode(["a cat"]), atol=1e-6)
    np.testing.assert_allclose(
        embedder.encode(["a cat"], prompt="instruct", task="find pets"),
        embedder.encode(["Instruct: find pets\nQuery: a cat"]),
        atol=1e-6,
    )
    excluding = Embedder.load(tiny_models["bert"], prompts=prompts, pooling={"name": "mean", "include_prompt": False})
    assert not np.allclose(excluding.encode(["a cat"], role="query"), query)
    with pytest.raises(ValueError, match="unknown role 'questions'"):
        embedder.encode(["a"], role="questions")
    with pytest.raises(ValueError, match="no prompt is in use"):
        embedder.encode(["a"], task="x")
    embedder.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {"query": "query: "}  # the template is gpte-only and kept in gpte_config.json
    assert Embedder.load(tmp_path / "m").prompts.to_strings() == {
        "query": "query: {text}",
        "instruct": prompts["instruct"],
    }


def test_normalize_truncate_and_precisions(embedders):
    from sentence_transformers.quantization import quantize_embeddings

    embedder = embedders["bert"]
    raw = embedder.encode(SENTENCES)
    unit = embedder.encode(SENTENCES, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    short = embedder.encode(SENTENCES, truncate_dim=8, normalize=True)
    np.testing.assert_allclose(short, raw[:, :8] / np.linalg.norm(raw[:, :8], axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(embedder.encode(SENTENCES, precision="float16"), raw.astype(np.float16))
    for precision in ("int8", "uint8", "binary", "ubinary"):
        ours = embedder.encode(SENTENCES, precision=precision)
        np.testing.assert_array_equal(ours, quantize_embeddings(raw, precision=precision))
    assert embedder.encode(SENTENCES, precision="binary").shape == (len(SENTENCES), 4)
    assert isinstance(embedder.encode(SENTENCES, convert_to="torch"), torch.Tensor)


def test_similarity_functions(embedders):
    embedder = embedders["bert"]
    a, b = np.array([[3.0, 4.0]]), np.array([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(embedder.similarity(a, b), [[1.0, 0.8]], atol=1e-6)
    from gpte import similarity

    np.testing.assert_allclose(similarity(a, b, "dot"), [[25.0, 4.0]])
    np.testing.assert_allclose(similarity(a, b, "euclidean"), [[0.0, -np.sqrt(18.0)]], atol=1e-6)
    np.testing.assert_allclose(similarity(a, b, "manhattan"), [[0.0, -6.0]])
    with pytest.raises(
        ValueError, match="unknown similarity 'jaccard'; choose one of: cosine, dot, euclidean, manhattan"
    ):
        similarity(a, b, "jaccard")


def test_long_texts_are_truncated_and_counted(tiny_models):
    embedder = Embedder.load(tiny_models["bert"], max_seq_length=8)
    texts = ["short", "a b c d e f g h i j k l", "short", "a b c d e f g h i j k l m"]
    with pytest.warns(UserWarning, match="2 of 4 texts were longer than 8 tokens"):
        result = embedder.encode_with_report(texts)
    assert result.report.truncated_indices == [1, 3]


def test_bad_input_gets_clear_errors(embedders):
    embedder = embedders["bert"]
    with pytest.raises(TypeError, match="texts must be a string or a sequence of strings, got NoneType"):
        embedder.encode(None)
    with pytest.raises(TypeError, match=r"texts\[2\] is int, not a string"):
        embedder.encode(["a", "b", 3])
    empty = embedder.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    assert embedder.encode([], precision="int8").shape == (0, 32)
    assert embedder.encode([], precision="binary").shape == (0, 4)
    blanks = embedder.encode(["", ""])
    assert blanks.shape == (2, 32) and np.isfinite(blanks).all()
    with pytest.raises(
        ValueError, match="unknown precision 'int4'; choose one of: float32, float16, int8, uint8, binary, ubinary"
    ):
        embedder.encode(["a"], precision="int4")
    with pytest.raises(ValueError, match="truncate_dim must be an integer from 1 to the model's dimension 32, got 64"):
        embedder.encode(["a"], truncate_dim=64)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        embedder.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="unknown convert_to 'list'"):
        embedder.encode(["a"], convert_to="list")


def test_bad_models_get_clear_errors(tiny_models, tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder or file: .*nowhere"):
        Embedder.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown pooling 'avg'; choose one of"):
        Embedder.load(tiny_models["bert"], pooling="avg")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="could not load a transformer"):
        Embedder.load(corrupt)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for item in tiny_models["bert"].iterdir():
        (truncated / item.name).write_bytes(item.read_bytes())
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError):
        Embedder.load(truncated)
    bad_modules = tmp_path / "bad_modules"
    bad_modules.mkdir()
    (bad_modules / "modules.json").write_text(
        json.dumps([{"idx": 0, "path": "", "type": "sentence_transformers.models.CNN"}])
    )
    with pytest.raises(ModelLoadError, match="Transformer -> Pooling -> Dense\\* -> Normalize"):
        Embedder.load(bad_modules)


def test_save_refuses_an_existing_folder(embedders, tmp_path):
    embedder = embedders["bert"]
    target = embedder.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        embedder.save(target)
    embedder.save(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind


def test_hub_id_without_network_names_the_offline_ways(tmp_path):
    import subprocess
    import sys

    code = "from gpte import Embedder\nEmbedder.load('some-org/some-model')"
    env = {
        "HF_HOME": str(tmp_path),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "PATH": "/usr/bin:/bin",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "could not get 'some-org/some-model' from the Hugging Face Hub" in result.stderr
    assert (
        "Without network, use a local model folder or .gguf file path, a packaged model (all-MiniLM-L6-v2"
        in result.stderr
    )


def test_hub_id_found_in_the_local_cache_loads_offline(tiny_models, tmp_path):
    """The hub path for real: snapshot_download resolves a cached repository with HF_HUB_OFFLINE=1."""
    import shutil
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    shutil.copytree(tiny_models["bert"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "from gpte import Embedder\nm = Embedder.load('tiny-org/tiny-bert')\nprint(m.name, m.encode(['a cat']).shape)"
    )
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("tiny-org/tiny-bert (1, 32)")
