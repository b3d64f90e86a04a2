"""Startup cost: ``import gpte``, building the ``gpte`` parser and printing help (the top-level one or a verb's) load
no torch, transformers or other heavy library; the names of ``gpte`` still resolve, on first use (PEP 562); ``gpte
--version`` prints gpte's version. Each check runs in a fresh Python, whose ``sys.modules`` holds only what it
imported; not timed (benchmarks/cli_startup.py measures the times)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpte._version import __version__

HEAVY = ("torch", "transformers", "numpy", "scipy", "sklearn", "faiss", "pandas", "pyarrow", "tqdm")


def heavy_modules_after(code: str) -> list[str]:
    """The modules of HEAVY loaded once a fresh Python has run ``code`` (which may exit through SystemExit, as
    argparse does after printing help)."""
    script = (
        "import json, sys\n"
        f"try:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import gpte",
        "import gpte, gpte.cli; gpte.cli.build_parser()",
        "from gpte.cli import main; main(['--help'])",
        "from gpte.cli import main; main(['encode', '--help'])",
        "from gpte.cli import main; main(['--version'])",
    ],
)
def test_startup_loads_no_heavy_library(code):
    assert heavy_modules_after(code) == []


def test_every_verb_help_loads_no_heavy_library():
    verbs = list(gpte_verbs())
    code = "from gpte.cli import main\n" + "".join(
        f"try:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass\n" for verb in verbs
    )
    assert len(verbs) > 10 and heavy_modules_after(code) == []


def gpte_verbs() -> list[str]:
    from gpte.cli import build_parser

    subparsers = next(action for action in build_parser()._actions if action.dest == "verb")
    return list(subparsers.choices)


def test_version_prints_gptes_version():
    result = subprocess.run([sys.executable, "-m", "gpte", "--version"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, f"gpte {__version__}\n")


def test_names_resolve_on_first_use():
    import gpte.similarity  # the submodule that shares the function's name: gpte.similarity stays the function
    from gpte import Embedder, similarity
    from gpte.models.embedder import Embedder as defined
    from gpte.similarity import similarity as similarity_defined

    assert Embedder is defined and similarity is similarity_defined and gpte.similarity is similarity_defined
    assert set(gpte.__all__) <= set(dir(gpte))
    assert all(getattr(gpte, name) is not None for name in gpte.__all__)
    with pytest.raises(AttributeError, match="module 'gpte' has no attribute 'Embeder'"):
        gpte.Embeder  # noqa: B018


def test_models_package_names_resolve_on_first_use():
    import gpte.models
    from gpte.models import POOLERS, Embedder
    from gpte.models.embedder import Embedder as defined
    from gpte.models.pooling import POOLERS as poolers

    assert Embedder is defined and POOLERS is poolers
    assert set(gpte.models.__all__) <= set(dir(gpte.models))
    with pytest.raises(AttributeError, match="module 'gpte.models' has no attribute 'Pooling'"):
        gpte.models.Pooling  # noqa: B018
