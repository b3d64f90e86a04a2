"""The README runs: its Python blocks, its `gpte` commands and its generated recipe reference.

- Every ```python block runs alone, in its own Python process, in a fresh folder laid out as the README is read
  (``examples/`` copied into the working folder, ``../shared`` beside it), and must exit 0. Blocks that talk to
  ``http://127.0.0.1:8000`` get a ``gpte serve`` of the packaged model, as their text says, on a free port that
  replaces 8000 in the block's text (so a server already on 8000 neither breaks the test nor answers it). Blocks marked
  ``slow`` (run them with ``pytest -m slow tests/test_readme.py``; CI's 25-minute budget leaves them out):
  those that load the packaged SmolLM2 GGUF (``smollm2-135m-instruct``, ``load_reranker("llm")``, ``promptreps``, or
  ``synthesize``, whose default generator it is): transformers reads the GGUF three times, ~25 s a load on 2 cores;
  and ``distill_static``, which embeds all 30,522 vocabulary tokens (about a minute).
- Every ``gpte`` command of a ```bash, ```sh or ```console block (split at ``&&``, ``|`` and ``;``, ``\\`` lines
  joined, comments dropped) is parsed by gpte's own argparse parser, so a verb or option that does not exist fails.
- The commands of each such block are then executed in order, in-process (``gpte.cli.main``), in a fresh prepared
  folder (the README's ``texts.txt``, ``docs/``, ``docs.jsonl``, ``q.txt``, ``long.jsonl``, ``corpus.txt``,
  ``pairs.jsonl`` and ``corpus.jsonl`` as small files; indexes, locks and ONNX files under it), and must exit 0,
  except these, which are only parsed (``PARSE_ONLY_VERBS`` and ``parse_only_reason``):
  ``gpte train`` (trains for minutes), ``gpte serve`` (runs until stopped), ``gpte analyze`` (minutes),
  ``gpte embed-corpus`` (starts a Ray cluster), ``gpte synth`` (generates with an LLM), ``gpte distill-static``
  (about a minute); commands with ``--milvus`` (a Milvus server), with ``--backend`` other than torch (the ONNX
  export), naming SmolLM2 (``smollm2-135m-instruct``, ``promptreps``, ``llm``: ~25 s a load), ``gpte evaluate`` of
  ``../shared/data`` (minutes; ``examples/tasks`` runs) and ``gpte mine`` of a ``../shared/data`` corpus (Cranfield's
  1,400 documents); and commands that read a model, file or index that no executed command made (a recipe's trained
  model under ``examples/runs/``, a hub id, as there is no network, or the output of a parse-only command).
  In the README as written, that leaves these executed: ``encode`` (texts, jsonl to parquet, late chunks),
  ``info``, ``evaluate``/``report`` of ``examples/tasks``, ``index`` and ``search`` of ``docs/`` (plain and late
  chunking), ``mine`` of ``pairs.jsonl`` against ``corpus.jsonl``, ``whiten``.
- ``gpte --help``, ``gpte VERB --help`` and ``gpte --version`` run too, and must print and exit 0.
- The recipe reference block equals ``gpte.train.recipe_reference.recipe_reference()``, every ```yaml block loads as
  a recipe, and every "see SECTION" in a command block names a section of the README.

Time: the Python blocks run two at a time in the background while the command tests run in-process (``block_runs``);
most of their time is importing torch, transformers and gpte, about 5-7 s a process on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gpte.cli import build_parser, main
from gpte.models.sources import PACKAGED_ALIASES, PACKAGED_MODELS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SHARED = REPO.parent / "shared"
SERVER = "http://127.0.0.1:8000"
SLOW_BLOCKS = {
    r"smollm2-135m-instruct|load_reranker\(\"llm\"\)|\"promptreps\"|synthesize\(": "loads the SmolLM2 GGUF",
    r"distill_static\(": "embeds the whole vocabulary",
}
PARSE_ONLY_VERBS = {
    "train": "trains a model (minutes)",
    "serve": "a server runs until stopped",
    "analyze": "every analysis section takes minutes",
    "embed-corpus": "starts a Ray cluster",
    "synth": "generates text with an LLM",
    "distill-static": "embeds all 30,522 vocabulary tokens (about a minute)",
}
LLM_NAMES = {"smollm2-135m-instruct", "promptreps", "llm"}
PRINT_AND_EXIT = {"-h", "--help", "--version"}  # argparse prints and exits 0
# the options whose values a command reads (models, files, folders); string values only (--sparse is a flag too)
INPUT_OPTIONS = (
    "input",
    "source",
    "corpus",
    "pairs",
    "model",
    "models",
    "data",
    "recipe",
    "vectors_from",
    "folders",
    "first_stage",
    "rerank",
    "reranker",
    "base",
    "cross_encoder",
    "ranges",
    "sparse",
    "multivector",
)
DOCS = {
    "wings.md": "# Stall\n\nA wing stalls when its angle of attack passes the critical angle: the flow separates "
    "from the upper surface and lift falls.\n",
    "heat.md": "# Heat transfer\n\nHeat flows through the plate from the hot side to the cold side.\n",
    "shock.txt": "A shock wave forms ahead of a blunt body in supersonic flow.\n",
}


def fenced_blocks(languages: set[str]) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of each fenced block of the README in ``languages``."""
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M):
        if match.group(1) in languages:
            blocks.append((README.count("\n", 0, match.start()) + 1, match.group(2)))
    return blocks


def commands(code: str) -> list[list[str]]:
    """The ``gpte`` commands of a shell block, as argv lists without ``gpte``: continuation lines joined, a ``$ ``
    prompt and comments (a ``#`` starting a word) dropped, lines split at ``&&``, ``||``, ``|`` and ``;``."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line.strip().removeprefix("$ "))
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, ""
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", "||", "|", ";"):
                if command[:1] == ["gpte"]:
                    found.append(command[1:])
                command = []
            else:
                command.append(token)
    return found


PYTHON_BLOCKS = fenced_blocks({"python"})
SHELL_BLOCKS = [(line, commands(code)) for line, code in fenced_blocks({"bash", "sh", "console"})]
SHELL_BLOCKS = [(line, found) for line, found in SHELL_BLOCKS if found]
COMMANDS = [(line, argv) for line, found in SHELL_BLOCKS for argv in found]


def slow_reason(code: str) -> str | None:
    return next((reason for pattern, reason in SLOW_BLOCKS.items() if re.search(pattern, code)), None)


def python_params() -> Iterator[object]:
    for line, code in PYTHON_BLOCKS:
        marks = [pytest.mark.real] + ([pytest.mark.slow] if slow_reason(code) else [])
        yield pytest.param(code, id=f"README.md:{line}", marks=marks)


def prepare(folder: Path) -> Path:
    """The README's working folder under ``folder``: ``folder/repo`` (returned) holds a copy of ``examples/`` and
    the small inputs the commands name; ``folder/shared`` is ../shared."""
    work = folder / "repo"
    shutil.copytree(REPO / "examples", work / "examples", ignore=shutil.ignore_patterns("runs"))
    (folder / "shared").symlink_to(SHARED, target_is_directory=True)
    texts = (REPO / "examples" / "texts.txt").read_text(encoding="utf-8")
    (work / "texts.txt").write_text(texts, encoding="utf-8")
    (work / "q.txt").write_text("why does a wing stall?\nhow does heat flow?\n", encoding="utf-8")
    (work / "docs").mkdir()
    for name, text in DOCS.items():
        (work / "docs" / name).write_text(text, encoding="utf-8")
    rows = [{"id": name, "body": text} for name, text in DOCS.items()]
    (work / "docs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    long_text = " ".join(DOCS.values()) * 12
    (work / "long.jsonl").write_text(json.dumps({"text": long_text}) + "\n", encoding="utf-8")
    sts = (SHARED / "data" / "sts" / "stsb-en" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    (work / "corpus.txt").write_text("".join(json.loads(row)["sentence1"] + "\n" for row in sts), encoding="utf-8")
    sample = work / "examples" / "tasks" / "cranfield-sample"
    shutil.copy(sample / "corpus.jsonl", work / "corpus.jsonl")
    queries = {json.loads(row)["_id"]: json.loads(row)["text"] for row in (sample / "queries.jsonl").open()}
    judged = [row.split("\t") for row in (sample / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    first = {query: document for query, document, _ in reversed(judged)}  # each query's first judged document
    pairs = [{"query": queries[query], "positive_id": document} for query, document in first.items()]
    (work / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs), encoding="utf-8")
    return work


@pytest.fixture
def readme_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prepared working folder, current directory, with gpte's indexes, locks and caches below it."""
    work = prepare(tmp_path)
    for variable, name in (("GPTE_INDEXES", "indexes"), ("GPTE_LOCKS", "locks"), ("GPTE_CACHE", "cache")):
        monkeypatch.setenv(variable, str(tmp_path / name))
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a ``gpte serve`` of the packaged model on a free port, for the blocks that are its clients."""
    folder = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "GPTE_LOCKS": str(folder / "locks"), "GPTE_INDEXES": str(folder / "indexes")}
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpte", "-q", "serve", "--port", str(port)], cwd=folder, env=env, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(process: subprocess.Popen, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gpte serve exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).is_success:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise TimeoutError(f"gpte serve did not answer {url}/health within {seconds} s")


def run_block(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script in a prepared working folder under ``folder``."""
    work = prepare(folder)
    (folder / "block.py").write_text(code, encoding="utf-8")
    env = {**os.environ, **{name: str(folder / name) for name in ("GPTE_INDEXES", "GPTE_LOCKS", "GPTE_CACHE")}}
    return subprocess.run(
        [sys.executable, str(folder / "block.py")], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module", autouse=True)
def block_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future]]:
    """The selected blocks that need no server, started two at a time in the background when the module starts (the
    in-process command tests run meanwhile): most of a block's time is its single-threaded imports, so they overlap
    well on CI's 2 cores."""
    selected = [item for item in request.session.items if getattr(item, "originalname", "") == BLOCK_TEST]
    codes = {item.callspec.params["code"] for item in selected} - {code for _, code in PYTHON_BLOCKS if SERVER in code}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {code: pool.submit(run_block, code, tmp_path_factory.mktemp("block")) for code in codes}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("argv", [pytest.param(argv, id=f"{line}:{shlex.join(argv)}") for line, argv in COMMANDS])
def test_command_parses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit:
        if exit.code == 0 and PRINT_AND_EXIT & set(argv):
            return
        pytest.fail(f"gpte {shlex.join(argv)} does not parse (exit {exit.code}): {capsys.readouterr().err}")


def parse_only_reason(argv: list[str], work: Path) -> str | None:
    """Why the command ``argv`` (without ``gpte``) is only parsed here, or None to execute it in ``work``."""
    args = build_parser().parse_args(argv)
    if args.verb in PARSE_ONLY_VERBS:
        return PARSE_ONLY_VERBS[args.verb]
    if getattr(args, "milvus", None):
        return "needs a Milvus server"
    if getattr(args, "backend", "torch") != "torch":
        return "exports the model to ONNX first"
    if LLM_NAMES & set(argv):
        return "loads the SmolLM2 GGUF (~25 s)"
    if args.verb in ("evaluate", "mine") and any("shared/data" in value for value in _inputs(args)):
        return "reads whole ../shared/data tasks (minutes)"
    known = set(PACKAGED_MODELS) | set(PACKAGED_ALIASES)
    missing = [value for value in _inputs(args) if value not in known and not (work / value).exists()]
    if args.verb == "search" and not (Path(os.environ["GPTE_INDEXES"]) / args.name).exists():
        missing.append(f"index {args.name}")
    if missing:
        return f"reads {', '.join(missing)}, which no executed command made (a trained model, a hub id)"
    return None


def _inputs(args: object) -> list[str]:
    values = [getattr(args, name, None) for name in INPUT_OPTIONS]
    flat = [item for value in values for item in (value if isinstance(value, list) else [value])]
    return [value for value in flat if isinstance(value, str)]


@pytest.mark.real
@pytest.mark.parametrize("argvs", [pytest.param(found, id=f"README.md:{line}") for line, found in SHELL_BLOCKS])
def test_shell_block_runs(argvs: list[list[str]], readme_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The block's commands in order; each must exit 0 unless it is only parsed (``parse_only_reason``)."""
    for argv in argvs:
        if PRINT_AND_EXIT & set(argv):
            with pytest.raises(SystemExit) as exit:
                main(argv)
            assert exit.value.code == 0 and capsys.readouterr().out, f"gpte {shlex.join(argv)} printed nothing"
        elif parse_only_reason(argv, readme_folder) is None:
            with _timed(argv):
                status = main(argv)
            assert status == 0, f"gpte {shlex.join(argv)} exited {status}: {capsys.readouterr().err[-3000:]}"


@contextmanager
def _timed(argv: list[str]) -> Iterator[None]:
    start = time.monotonic()
    yield
    print(f"gpte {shlex.join(argv)}: {time.monotonic() - start:.1f} s")


def test_recipe_reference_is_generated() -> None:
    from gpte.train.recipe_reference import recipe_reference, replace_block

    assert replace_block(README, recipe_reference()) == README, (
        "the README's recipe reference is stale: python -m gpte.train.recipe_reference --write README.md"
    )


@pytest.mark.parametrize("text", [pytest.param(text, id=f"README.md:{line}") for line, text in fenced_blocks({"yaml"})])
def test_yaml_block_is_a_valid_recipe(text: str, tmp_path: Path) -> None:
    """A recipe shown in the README loads (keys and settings checked), from ``examples/`` as its paths assume."""
    from gpte.train.recipe import load_recipe

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "recipe.yaml").write_text(text, encoding="utf-8")
    assert load_recipe(tmp_path / "examples" / "recipe.yaml").stages


def test_sections_named_by_commands_exist() -> None:
    headings = re.findall(r"^#+ (.+)$", README, re.M)
    comments = [comment for _, code in fenced_blocks({"bash"}) for comment in re.findall(r"(?:^|\s)#(.*)", code)]
    named = {name.strip() for comment in comments for name in re.findall(r"\bsee ([A-Z][\w -]*)", comment)}
    missing = [name for name in named if not any(re.match(rf"{re.escape(name)}($|:| \()", h) for h in headings)]
    assert named and not missing, f"commands point to sections that do not exist: {missing}"


# last in the file, so that in file order the command tests above run while the blocks run in the background
@pytest.mark.parametrize("code", python_params())
def test_python_block_runs_alone(code: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if SERVER in code:
        result = run_block(code.replace(SERVER, request.getfixturevalue("server")), tmp_path)
    else:
        result = request.getfixturevalue("block_runs")[code].result()
    assert result.returncode == 0, f"the block failed:\n{code}\n--- stderr ---\n{result.stderr[-4000:]}"


BLOCK_TEST = test_python_block_runs_alone.__name__
