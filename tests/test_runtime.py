"""Backends, streaming with resume, quantized outputs and static embeddings, on tiny random models."""

import json
import pickle
import sys

import numpy as np
import pytest
from conftest import SENTENCES

from gpte import Embedder
from gpte.errors import BackendUnavailableError
from gpte.models import backends
from gpte.models.static import StaticEmbedder, distill_static
from gpte.runtime.quantization import binary_rescore_search, calibrate, load_ranges, save_ranges
from gpte.runtime.streaming import encode_to

TEXTS = [f"{sentence} number {i}" for i, sentence in enumerate(SENTENCES * 7)]


@pytest.fixture(scope="module")
def bert(tiny_models):
    return Embedder.load(tiny_models["bert"], device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """gpte's cache (where ONNX exports go) in the test's own folder: tests neither share nor leave exports."""
    monkeypatch.setenv("GPTE_CACHE", str(tmp_path / "cache"))


def _export(model):
    """The folder holding ``model``'s ONNX files."""
    return model._runner.folder


def _copy(folder, tmp_path):
    import shutil

    return shutil.copytree(folder, tmp_path / "model")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_onnx_fp32_equals_torch_and_is_reused(tiny_models, tmp_path, family):
    folder = _copy(tiny_models[family], tmp_path)
    torch_model = Embedder.load(folder, device="cpu")
    reference = torch_model.encode(TEXTS)
    attention = torch_model.backbone.model.config._attn_implementation
    onnx = Embedder.load(folder, device="cpu", backend="onnx")
    export = _export(onnx)
    assert onnx.backend == "onnx" and (export / "model.onnx").exists()
    np.testing.assert_allclose(onnx.encode(TEXTS, batch_size=5), reference, atol=1e-4)
    # encoders get ONNX Runtime's fused kernels (one Attention op per layer); decoders keep the plain graph
    manifest = json.loads((export / "gpte_onnx.json").read_text())
    assert manifest["graph"] == {"bert": "fused", "llama": "plain"}[family]
    assert (_op_count(export / "model.onnx", "Attention") == 2) == (family == "bert")
    assert onnx.backbone.model.config._attn_implementation == attention  # eager only while exporting
    stamp = (export / "model.onnx").stat().st_mtime_ns
    assert _export(Embedder.load(folder, device="cpu", backend="onnx")) == export
    assert (export / "model.onnx").stat().st_mtime_ns == stamp  # verified and reused, not exported again


def _op_count(path, op_type):
    import onnx

    return sum(node.op_type == op_type for node in onnx.load(str(path)).graph.node)


def test_fused_graph_that_differs_from_torch_is_not_used(tiny_models, tmp_path, monkeypatch):
    from gpte.models import onnx_backend

    folder = _copy(tiny_models["bert"], tmp_path)
    monkeypatch.setattr(onnx_backend, "EXACT_TOLERANCE", -1.0)  # no graph can pass: the fused one must be refused
    with pytest.warns(UserWarning, match=r"the fused graph differs from PyTorch by .* using the plain graph"):
        onnx = Embedder.load(folder, device="cpu", backend="onnx")
    assert json.loads((_export(onnx) / "gpte_onnx.json").read_text())["graph"] == "plain"
    assert _op_count(_export(onnx) / "model.onnx", "Attention") == 0
    np.testing.assert_allclose(onnx.encode(TEXTS), Embedder.load(folder, device="cpu").encode(TEXTS), atol=1e-4)


def test_corrupt_onnx_file_is_detected_and_exported_again(tiny_models, tmp_path):
    folder = _copy(tiny_models["bert"], tmp_path)
    first = Embedder.load(folder, device="cpu", backend="onnx")
    reference = first.encode(TEXTS)
    model_file = _export(first) / "model.onnx"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="model.onnx does not match its checksum"):
        again = Embedder.load(folder, device="cpu", backend="onnx")
    np.testing.assert_allclose(again.encode(TEXTS), reference, atol=1e-6)
    manifest = json.loads((_export(again) / "gpte_onnx.json").read_text())
    assert set(manifest["files"]) == {"model.onnx"} and manifest["source_sha256"]


def test_onnx_int8_is_close_to_fp32(tiny_models, tmp_path):
    folder = _copy(tiny_models["bert"], tmp_path)
    reference = Embedder.load(folder, device="cpu").encode(TEXTS, normalize=True)
    int8 = Embedder.load(folder, device="cpu", backend="onnx-int8")
    quantized = int8.encode(TEXTS, normalize=True)
    cosines = (reference * quantized).sum(axis=1)
    assert cosines.min() > 0.95 and not np.array_equal(reference, quantized)
    assert (_export(int8) / "model_int8.onnx").exists()


@pytest.mark.parametrize("settings, remade", [("int8_settings", "model_int8.onnx"), ("export_settings", "model.onnx")])
def test_files_made_with_other_settings_are_made_again(tiny_models, tmp_path, settings, remade):
    folder = _copy(tiny_models["bert"], tmp_path)
    manifest_path = _export(Embedder.load(folder, device="cpu", backend="onnx-int8")) / "gpte_onnx.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["int8_settings"]["per_channel"] is True and manifest["int8_settings"]["reduce_range"] is True
    del manifest[settings]  # as an older gpte wrote it (per-tensor scales; an unfused graph)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=f"{remade} does not match its checksum"):
        Embedder.load(folder, device="cpu", backend="onnx-int8")
    assert settings in json.loads(manifest_path.read_text())


def test_unavailable_backends_say_what_to_do(bert, monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of: torch, bf16, onnx, onnx-int8"):
        backends.select_backend(bert.backbone, "tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'gpte\[onnx\]'"):
        backends.select_backend(bert.backbone, "onnx", "unused")
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BackendUnavailableError, match="no native bfloat16 instructions.*Use backend='onnx-int8'"):
        backends.select_backend(bert.backbone, "bf16")


def test_bf16_backend_where_the_cpu_has_it(tiny_models, monkeypatch):
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    reference = Embedder.load(tiny_models["bert"], device="cpu").encode(TEXTS, normalize=True)
    model = Embedder.load(tiny_models["bert"], device="cpu", backend="bf16")
    vectors = model.encode(TEXTS, normalize=True)
    assert vectors.dtype == np.float32 and model.info()["backend"] == "bf16" and model.info()["dtype"] == "bfloat16"
    assert (reference * vectors).sum(axis=1).min() > 0.99


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_streaming_equals_encode(bert, tmp_path, suffix):
    report = encode_to(bert, TEXTS, tmp_path / f"out{suffix}", chunk_size=8, show_progress=False)
    assert (report.n_texts, report.n_chunks, report.n_resumed_chunks) == (len(TEXTS), 6, 0)
    if suffix == ".npy":
        written = np.load(tmp_path / "out.npy")
    else:
        import pyarrow.parquet as pq

        written = np.stack(pq.read_table(tmp_path / "out.parquet").column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(written, bert.encode(TEXTS), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


def test_killed_stream_resumes_to_an_identical_file(bert, tmp_path, monkeypatch):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    encode_to(bert, source, tmp_path / "whole.npy", chunk_size=8, show_progress=False)

    calls = {"n": 0}
    original = type(bert).encode_with_report

    def dies_on_the_third_chunk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(bert), "encode_with_report", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_to(bert, source, tmp_path / "resumed.npy", chunk_size=8, show_progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "resumed.npy").exists() and (tmp_path / ".resumed.npy.partial.npy").exists()
    report = encode_to(bert, source, tmp_path / "resumed.npy", chunk_size=8, show_progress=False)
    assert (report.n_resumed_chunks, report.n_chunks) == (2, 4)
    assert (tmp_path / "resumed.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()
    assert not list(tmp_path.glob(".resumed*"))


def test_a_damaged_finished_chunk_is_encoded_again(bert, tmp_path, monkeypatch):
    monkeypatch.setattr(type(bert), "encode_with_report", _failing_after(type(bert).encode_with_report, 4))
    with pytest.raises(RuntimeError):
        encode_to(bert, TEXTS, tmp_path / "v.npy", chunk_size=8, show_progress=False)
    monkeypatch.undo()
    partial = tmp_path / ".v.npy.partial.npy"
    data = bytearray(partial.read_bytes())
    progress = json.loads((tmp_path / ".v.npy.progress.json").read_text())
    data[progress["offset"] + 8 * 32 * 4 + 5] ^= 0xFF  # a byte in chunk 1
    partial.write_bytes(bytes(data))
    report = encode_to(bert, TEXTS, tmp_path / "v.npy", chunk_size=8, show_progress=False)
    assert report.n_resumed_chunks == 1
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), bert.encode(TEXTS), atol=1e-5)


def _failing_after(original, n):
    calls = {"n": 0}

    def wrapped(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise RuntimeError("worker died")
        return original(self, *args, **kwargs)

    return wrapped


def test_a_changed_input_starts_over(bert, tmp_path, monkeypatch):
    monkeypatch.setattr(type(bert), "encode_with_report", _failing_after(type(bert).encode_with_report, 2))
    with pytest.raises(RuntimeError):
        encode_to(bert, TEXTS, tmp_path / "v.npy", chunk_size=8, show_progress=False)
    monkeypatch.undo()
    report = encode_to(bert, TEXTS[::-1], tmp_path / "v.npy", chunk_size=8, show_progress=False)
    assert report.n_resumed_chunks == 0
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), bert.encode(TEXTS[::-1]), atol=1e-5)


def test_int8_streaming_with_saved_calibration_or_the_ranges_of_all_vectors(bert, tmp_path):
    encode_to(bert, TEXTS, tmp_path / "all.npy", precision="int8", chunk_size=8, show_progress=False)
    streamed, whole = np.load(tmp_path / "all.npy").astype(int), bert.encode(TEXTS, precision="int8").astype(int)
    assert np.abs(streamed - whole).max() <= 1  # same ranges; float rounding across chunks may move a bucket edge
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.npy"]
    ranges = load_ranges(save_ranges(tmp_path / "ranges.npy", calibrate(bert.encode(TEXTS[:20]))))
    encode_to(bert, TEXTS, tmp_path / "q.npy", precision="int8", ranges=ranges, chunk_size=8, show_progress=False)
    from gpte.models.postprocess import quantize

    expected = quantize(bert.encode(TEXTS), "int8", ranges).astype(int)
    assert np.abs(np.load(tmp_path / "q.npy").astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match="at least two vectors"):
        calibrate(np.zeros((1, 4)))


def test_binary_search_with_rescoring():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(300, 64)).astype(np.float32)
    queries = corpus[:5] + 0.05 * rng.normal(size=(5, 64)).astype(np.float32)
    bits = np.packbits(corpus > 0, axis=-1)
    scores, indices = binary_rescore_search(queries, bits, corpus, top_k=3, rescore_multiplier=100)
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :3]  # every row rescored: the exact float ranking
    np.testing.assert_array_equal(indices, exact)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ corpus.T, exact, 1), rtol=1e-5)
    signed = (bits.astype(np.int16) - 128).astype(np.int8)  # 'binary' precision gives the same neighbours
    _, few = binary_rescore_search(queries, signed, corpus, top_k=1, rescore_multiplier=2)
    np.testing.assert_array_equal(few[:, 0], np.arange(5))


def test_static_distillation_save_load_and_mean_of_rows(bert, tmp_path):
    static = distill_static(bert, pca_dims=8, show_progress=False)
    assert static.table.shape == (len(bert.backbone.tokenizer), 8)
    texts = ["a cat", "", "Ünïcode,  tabs\tand an unknownwordpiece " * 40]  # the last one: past any truncation length
    ids = static.tokenizer(texts, add_special_tokens=False)["input_ids"]  # the tokenizer's own call is the reference
    vectors = static.encode(texts, normalize=False)
    for row, expected_ids in zip(vectors, ids):
        expected = static.table[expected_ids].mean(axis=0) if expected_ids else np.zeros(8)
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-7)
    assert len(ids[2]) > bert.max_seq_length
    assert (
        pickle.loads(pickle.dumps(static)).encode(texts).tobytes() == static.encode(texts).tobytes()
    )  # for worker processes
    loaded = StaticEmbedder.load(static.save(tmp_path / "static"))
    np.testing.assert_array_equal(loaded.encode(TEXTS), static.encode(TEXTS))
    assert "reduced to 8 dimensions by PCA" in (tmp_path / "static" / "README.md").read_text()  # its model card
    with pytest.raises(ValueError, match="pca_dims must be from 1 to the model's dimension 32"):
        distill_static(bert, pca_dims=64)


class Exploding(Embedder):
    """Fails inside the worker process on one text."""

    def encode(self, texts, **options):
        if "boom" in texts:
            raise ValueError("cannot embed 'boom'")
        return super().encode(texts, **options)


def test_multi_process_matches_and_propagates_worker_errors(tiny_models):
    import multiprocessing

    from gpte.runtime.multiprocess import encode_multi_process

    model = Embedder.load(tiny_models["bert"], device="cpu")
    vectors = encode_multi_process(model, TEXTS, processes=2, chunk_size=7)
    np.testing.assert_allclose(vectors, model.encode(TEXTS), atol=1e-5)
    exploding = Exploding.load(tiny_models["bert"], device="cpu")
    with pytest.raises(ValueError, match="cannot embed 'boom'"):
        encode_multi_process(exploding, TEXTS + ["boom"], processes=2, chunk_size=7)
    assert multiprocessing.active_children() == []
