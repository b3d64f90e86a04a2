"""Dependencies by need: the core encodes; each feature beyond it is an extra, and a missing one raises an error
that names its install line. The fast tests hide one module (``sys.modules[name] = None``) and import the feature
again in this process; the slow test installs the core alone into a fresh venv and runs the command there."""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpte.cli import main
from gpte.errors import GpteError, MissingExtraError, extra_needed, require_extra

REPO = Path(__file__).resolve().parents[1]
TEXTS_FILE = REPO / "examples" / "texts.txt"


FEATURES = (
    "gpte.evaluate",
    "gpte.search",
    "gpte.train",
    "gpte.serve",
    "gpte.analysis",
    "gpte.datagen",
    "gpte.models.sparse",
)


@pytest.fixture
def hidden(monkeypatch):
    """``hide(feature, *modules)``: import ``feature`` afresh, with every feature package (or, for ``gpte``, every
    gpte module) dropped first and ``modules`` (with their submodules) missing. The modules, and the package attributes that name them, are put
    back after the test."""
    saved_modules = dict(sys.modules)
    saved_attributes = {name: vars(module).copy() for name, module in saved_modules.items() if name.startswith("gpte")}

    def hide(feature: str, *modules: str) -> object:
        prefixes = ("gpte",) if feature == "gpte" else FEATURES
        for name in [name for name in sys.modules if name.split(".")[0] == "gpte"]:
            if name.startswith(prefixes):
                del sys.modules[name]
        for name in [*modules, *(name for name in sys.modules if name.startswith(tuple(f"{m}." for m in modules)))]:
            monkeypatch.setitem(sys.modules, name, None)
        return importlib.import_module(feature)

    yield hide
    for name in set(sys.modules) - set(saved_modules):
        del sys.modules[name]
    sys.modules.update(saved_modules)
    for name, attributes in saved_attributes.items():
        vars(sys.modules[name]).update(attributes)


@pytest.mark.parametrize(
    ("module", "feature", "extra"),
    [
        ("faiss", "gpte.search.index", "search"),
        ("Stemmer", "gpte.search.lexical", "search"),
        ("fastapi", "gpte.serve.app", "serve"),
        ("uvicorn", "gpte.serve", "serve"),
        ("accelerate", "gpte.train", "train"),
        ("sklearn", "gpte.train", "train"),  # needed through gpte.evaluate: the train extra installs eval too
        ("pytrec_eval", "gpte.evaluate", "eval"),
        ("scipy", "gpte.evaluate.tasktypes.sts", "eval"),
        ("sacrebleu", "gpte.analysis", "analysis"),
        ("json_repair", "gpte.datagen.synthesis", "datagen"),
        ("pymilvus", "gpte.search.milvus", "milvus"),
        ("scipy", "gpte.models.sparse", "sparse"),
        ("scipy", "gpte.search", "search"),
    ],
)
def test_a_missing_module_names_the_extra_that_installs_it(hidden, module, feature, extra):
    with pytest.raises(MissingExtraError) as caught:
        hidden(feature, module)
    error = caught.value
    assert str(error) == f"gpte's {extra} extra is not installed ({module} is missing): pip install 'gpte[{extra}]'"
    assert (error.name, error.extra) == (module, extra)
    assert isinstance(error, GpteError) and isinstance(error, ModuleNotFoundError)


def test_the_core_imports_with_every_extra_missing(hidden):
    optional = "faiss bm25s Stemmer pyarrow fastapi uvicorn prometheus_client pymilvus ray sklearn scipy pytrec_eval"
    optional += (
        " matplotlib peft datasets accelerate tensorboard sacrebleu json_repair py3langid httpx onnx onnxruntime"
    )
    gpte = hidden("gpte", *optional.split())
    assert gpte.Embedder.__module__ == "gpte.models.embedder"
    for feature in ("gpte.cli", "gpte.runtime.streaming", "gpte.runtime.output", "gpte.data.readers"):
        importlib.import_module(feature)


def test_require_extra_checks_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "json_repair", raising=False)
    require_extra("datagen", "json_repair")
    assert "json_repair" not in sys.modules
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingExtraError, match=r"\(faiss is missing\): pip install 'gpte\[search\]'"):
        require_extra("search", "numpy", "faiss")


def test_extra_needed_renames_only_missing_third_party_modules(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpte.no_such_module", None)
    with pytest.raises(ModuleNotFoundError) as caught, extra_needed("eval"):
        import gpte.no_such_module  # noqa: F401
    assert type(caught.value) is ModuleNotFoundError  # a broken gpte install is not a missing extra
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'gpte\[scale\]'"), extra_needed("scale"):
        import ray.data  # noqa: F401


def test_the_error_survives_pickling_to_and_from_workers():
    error = pickle.loads(pickle.dumps(MissingExtraError("ray", "scale")))
    assert (str(error), error.name, error.extra) == (str(MissingExtraError("ray", "scale")), "ray", "scale")


def test_parquet_output_without_pyarrow_fails_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["encode", str(TEXTS_FILE), "-o", str(tmp_path / "v.parquet"), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == (
        "gpte: error: gpte's parquet extra is not installed (pyarrow is missing): pip install 'gpte[parquet]'"
    )
    assert not any(tmp_path.iterdir())


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, env=environment)


@pytest.mark.slow
def test_the_core_alone_installs_encodes_and_names_the_missing_extras(tmp_path):
    """``pip install gpte`` in a fresh venv (no system site-packages): ``gpte encode`` gives the vectors of this
    environment, faiss is absent, and search names its extra. 3 minutes here on 2 busy cores with pip's cache warm
    (2.4 of them installing torch and the core), 5 the first time."""
    source = tmp_path / "source"  # a copy, so that the build writes nothing into the repository
    shutil.copytree(REPO / "gpte", source / "gpte", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    started = time.perf_counter()
    for step in (
        [sys.executable, "-m", "venv", venv],
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "torch==2.13.0"],
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", source],
    ):
        done = _run(*step)
        assert done.returncode == 0, done.stderr[-2000:]
    print(f"venv with torch and the gpte core: {time.perf_counter() - started:.0f} s")

    encoded = _run(venv / "bin" / "gpte", "encode", TEXTS_FILE, "-o", tmp_path / "v.npy", "--no-progress")
    assert encoded.returncode == 0, encoded.stderr[-2000:]
    from gpte import Embedder
    from gpte.data.readers import read_texts

    expected = Embedder.load(device="cpu").encode(read_texts(TEXTS_FILE))
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-5)

    faiss = _run(venv / "bin" / "python", "-c", "import faiss")
    assert faiss.returncode == 1 and "No module named 'faiss'" in faiss.stderr
    search = _run(venv / "bin" / "python", "-c", "from gpte.search.index import Index")
    assert search.returncode == 1
    assert search.stderr.strip().splitlines()[-1] == (
        "gpte.errors.MissingExtraError: gpte's search extra is not installed (faiss is missing): "
        "pip install 'gpte[search]'"
    )
    index = _run(venv / "bin" / "gpte", "index", REPO / "examples", "--name", "x", "--root", tmp_path / "indexes")
    assert (index.returncode, index.stderr.strip()) == (
        1,
        "gpte: error: gpte's search extra is not installed (faiss is missing): pip install 'gpte[search]'",
    )
