"""Where gpte meets other tools: a worker pool started from an unguarded script, a Ray cluster too small for the
actors asked for, ONNX exports of a model in a package or read-only folder, an unreachable Milvus, a model path
that does not exist, and Hugging Face datasets (``hf:``) as input texts. Each test reproduces a reported defect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpte import Embedder
from gpte.cli import main
from gpte.data.readers import iter_records, read_texts
from gpte.data.training import read_training_data
from gpte.errors import ModelLoadError
from gpte.models import sources
from gpte.models.sources import resolve_model
from gpte.search.distributed import usable_concurrency

REPO = Path(__file__).resolve().parents[1]
UNGUARDED = """from gpte.runtime.multiprocess import encode_multi_process
class Model: encode = lambda self, texts, **options: [[float(len(text))] for text in texts]
print(encode_multi_process(Model(), ["a", "bb"], processes=1))
"""


def test_a_script_without_a_main_guard_fails_in_seconds_naming_the_fix(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED, encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30, env=_env()
    )
    assert time.monotonic() - started < 30 and result.returncode == 1  # it used to wait forever
    assert "RuntimeError: an encoding worker process died or could not start" in result.stderr
    assert 'under `if __name__ == "__main__":`, or pass start_method="fork"' in result.stderr
    assert "leaked semaphore" not in result.stderr and result.stdout == ""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_an_unknown_start_method_is_refused():
    from gpte.runtime.multiprocess import encode_multi_process

    with pytest.raises(ValueError, match="start_method must be one of spawn, fork, got 'forkserver'"):
        encode_multi_process(object(), ["a"], start_method="forkserver")


@pytest.mark.parametrize(
    ("asked", "num_cpus", "num_gpus", "resources", "used"),
    [
        (4, 1.0, 0.0, {"CPU": 2.0}, 1),  # the reported deadlock: 2 CPUs, 4 actors; one CPU stays for reading
        (4, 0.5, 0.0, {"CPU": 2.0}, 2),
        (3, 1.0, 0.0, {"CPU": 16.0}, 3),  # fits: unchanged, no warning
        (4, 1.0, 1.0, {"CPU": 16.0, "GPU": 2.0}, 2),  # GPUs bound it
    ],
)
def test_ray_concurrency_is_lowered_to_what_the_cluster_runs_beside_the_reading(
    asked, num_cpus, num_gpus, resources, used, recwarn
):
    assert usable_concurrency(asked, num_cpus, num_gpus, resources) == used
    messages = [str(warning.message) for warning in recwarn]
    if used == asked:
        assert messages == []
    else:
        assert len(messages) == 1 and messages[0].startswith(f"concurrency {asked} lowered to {used}: the Ray cluster")


@pytest.mark.parametrize(
    ("concurrency", "num_cpus", "num_gpus", "resources", "message"),
    [
        (1, 1.0, 0.0, {"CPU": 1.0}, "the Ray cluster has 1 CPUs and 0 GPUs: one embedding actor with num_cpus=1"),
        (1, 1.0, 1.0, {"CPU": 8.0}, "does not fit beside the 1 CPU the file reading needs; lower num_cpus"),
        (0, 1.0, 0.0, {"CPU": 8.0}, "concurrency must be a positive integer, got 0"),
    ],
)
def test_a_cluster_with_no_room_for_one_actor_is_refused(concurrency, num_cpus, num_gpus, resources, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        usable_concurrency(concurrency, num_cpus, num_gpus, resources)


def _read_only_copy(folder: Path, destination: Path) -> Path:
    shutil.copytree(folder, destination)
    for path in [destination, *destination.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return destination


def _listing(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_onnx_exports_go_to_the_cache_never_into_a_package_or_read_only_model_folder(
    tiny_models, tmp_path, monkeypatch
):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GPTE_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "venv/lib/python3.11/site-packages/some_model_package/model"
    shutil.copytree(tiny_models["bert"], package)
    read_only = _read_only_copy(tiny_models["bert"], tmp_path / "read-only")
    try:
        before = {folder: _listing(folder) for folder in (package, read_only)}
        first = Embedder.load(package, device="cpu").use_backend("onnx")  # no export_dir: gpte's cache
        export = first._runner.folder
        assert export.parent == tmp_path / "cache" / "onnx" and (export / "model.onnx").is_file()
        stamp = (export / "model.onnx").stat().st_mtime_ns
        for folder in (package, read_only):  # asked to write beside the model: refused, the cache is used
            with pytest.warns(UserWarning, match=rf"not writing ONNX files into {folder}/gpte-onnx \(inside an"):
                again = Embedder.load(folder, device="cpu").use_backend("onnx", folder / "gpte-onnx")
            assert again._runner.folder == export  # the same weights: the same export, reused
        for folder in (package, read_only):
            Embedder.load(folder, device="cpu", backend="onnx")  # the load option writes nothing there either
            assert _listing(folder) == before[folder]
        assert (export / "model.onnx").stat().st_mtime_ns == stamp  # verified and reused, never exported again
        assert json.loads((export / "gpte_onnx.json").read_text())["files"].keys() == {"model.onnx"}
    finally:
        for path in [read_only, *read_only.rglob("*")]:
            path.chmod(0o755)


def test_a_writable_export_dir_the_user_gives_is_used(bert_copy):
    folder, export = bert_copy
    model = Embedder.load(folder, device="cpu").use_backend("onnx", export)
    assert model._runner.folder == export and (export / "model.onnx").is_file()


@pytest.fixture
def bert_copy(tiny_models, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GPTE_CACHE", str(tmp_path / "cache"))
    return shutil.copytree(tiny_models["bert"], tmp_path / "model"), tmp_path / "my-exports"


def test_an_unreachable_milvus_is_one_line_naming_the_uri_and_the_ways_out(capsys):
    pytest.importorskip("pymilvus")
    from gpte.search.milvus import MilvusUnavailableError, connect

    with pytest.raises(MilvusUnavailableError) as caught:
        connect("http://127.0.0.1:1")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot connect to Milvus at http://127.0.0.1:1 (")
    assert "milvus-lite server --data-dir DIR --port PORT" in message and "path ending in .db" in message
    assert main(["search", "papers", "wing", "--milvus", "http://127.0.0.1:1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("gpte: error: cannot connect to Milvus at http://127.0.0.1:1") and error.count("\n") == 1


@pytest.mark.parametrize("name", ["my-model/", "./my-model", "/no/such/model", "a/b/c", "~/my-model"])
def test_a_missing_model_path_is_named_not_looked_up_on_the_hub(name, monkeypatch):
    monkeypatch.setattr(sources, "_hub_source", lambda *args: pytest.fail("a path went to the hub"))
    with pytest.raises(ModelLoadError, match=f"^no such model folder or file: {name} \\(a path, not a Hugging Face"):
        resolve_model(name)


def test_hub_ids_still_go_to_the_hub(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(sources, "_hub_source", lambda name, revision: asked.append(name) or tmp_path)
    for name in ("org/model", "model-name"):
        resolve_model(name)
    assert asked == ["org/model", "model-name"]


def test_cli_names_a_missing_model_folder_in_one_line(tmp_path, capsys):
    (tmp_path / "texts.txt").write_text("a wing\n", encoding="utf-8")
    code = main(["encode", str(tmp_path / "texts.txt"), "-o", str(tmp_path / "v.npy"), "--model", "my-model/"])
    error = capsys.readouterr().err
    assert code == 1 and error == (
        "gpte: error: no such model folder or file: my-model/ (a path, not a Hugging Face Hub id: those read org/name)\n"
    )
    assert not (tmp_path / "v.npy").exists()


@pytest.fixture
def hf_folders(tmp_path, monkeypatch):
    """Stand-ins for hub datasets (none is reachable here): a folder of data files, as a hub repository holds, and
    a ``save_to_disk`` folder with two splits."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    files = tmp_path / "hub-like"
    files.mkdir()
    rows = [{"text": "a wing stalls", "label": 1}, {"text": "heat transfer", "label": 0}]
    (files / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"query": ["q1", "q2"], "positive": ["p1", "p2"]}),
            "test": datasets.Dataset.from_dict({"query": ["t1"], "positive": ["tp1"]}),
        }
    ).save_to_disk(saved)
    return files, saved


def test_hf_datasets_are_read_as_texts_wherever_texts_are_read(hf_folders):
    files, saved = hf_folders
    assert read_texts(f"hf:{files}") == ["a wing stalls", "heat transfer"]
    assert read_texts(f"hf:{files}:train") == ["a wing stalls", "heat transfer"]
    assert read_texts(Path(f"hf:{saved}"), "query") == ["q1", "q2"]  # a Path, as encode's streaming reader passes
    assert read_texts(f"hf:{saved}:test", "positive") == ["tp1"]
    where, record = next(iter_records(f"hf:{files}"))
    assert (where, record) == (f"hf:{files} row 0", {"text": "a wing stalls", "label": 1})
    assert [row.texts for row in read_training_data(f"hf:{saved}:test").rows] == [("t1", "tp1")]


def test_hf_mining_pairs_are_read_like_a_pairs_file(hf_folders):
    from gpte.datagen.mining import read_pairs

    _, saved = hf_folders
    assert read_pairs(f"hf:{saved}") == [
        (f"hf:{saved} row 0", None, "q1", "p1"),
        (f"hf:{saved} row 1", None, "q2", "p2"),
    ]


@pytest.mark.parametrize(
    ("suffix", "field", "error", "message"),
    [
        ("", "body", ValueError, r"no column 'body' \(columns: text, label\); choose one with --field"),
        (":validation", "text", ValueError, r"no split 'validation'"),
        (":a:b:c", "text", ValueError, r"a Hugging Face dataset is hf:NAME, hf:NAME:SPLIT or hf:NAME:SUBSET:SPLIT"),
    ],
)
def test_bad_hf_inputs_say_what_is_wrong(hf_folders, suffix, field, error, message):
    files, _ = hf_folders
    with pytest.raises(error, match=message):
        read_texts(f"hf:{files}{suffix}", field)


def test_an_unreachable_hub_dataset_names_the_offline_ways(hf_folders, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail at once, as with no network, not after retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"could not load the dataset hf:nobody/nothing \(.*Without network"):
        read_texts("hf:nobody/nothing")


def test_encode_and_index_read_hf_datasets(hf_folders, embedder, tmp_path):
    import numpy as np

    from gpte.data.documents import read_documents
    from gpte.runtime.streaming import encode_to

    files, saved = hf_folders
    encode_to(embedder, f"hf:{files}", tmp_path / "v.npy", show_progress=False)
    np.testing.assert_allclose(
        np.load(tmp_path / "v.npy"), embedder.encode(["a wing stalls", "heat transfer"]), atol=1e-6
    )
    documents = read_documents(f"hf:{saved}:test", "query")
    assert [(doc.id, doc.text, doc.metadata) for doc in documents] == [
        (f"hf:{saved}:test:0", "t1", {"source": f"hf:{saved}:test", "positive": "tp1"})
    ]


def test_loading_with_backend_onnx_writes_to_the_cache_without_a_warning(bert_copy, recwarn):
    folder, _ = bert_copy
    model = Embedder.load(folder, device="cpu", backend="onnx")
    assert model._runner.folder.parent.name == "onnx" and not (folder / "gpte-onnx").exists()
    assert not [warning for warning in recwarn if "ONNX" in str(warning.message)]
