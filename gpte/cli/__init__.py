"""The ``gpte`` command: thin verbs over the library.

gpte [-v | -q] VERB ...   (-v: debug messages and other libraries' logs; -q: warnings and errors only)
gpte --version

gpte encode INPUT -o OUTPUT [--model M] [--field F] [--role R] [--prompt P] [--task T]
            [--batch-size N] [--truncate-dim D] [--precision P] [--normalize | --no-normalize]
            [--device DEV] [--backend B] [--ranges R.npy] [--chunk-size N] [--overwrite] [--no-progress]
            [--chunk [--chunk-tokens N] [--chunk-overlap N] [--chunk-boundary token|sentence] [--late-chunking]
             [--window-overlap N]]   (one vector per chunk: OUTPUT/tokens.npy, offsets.npy, spans.npy)
gpte distill-static -o FOLDER [--model M] [--pca-dims 256] [--sif 1e-4]
gpte info [MODEL]
gpte evaluate --data DIR [--model M] [--backend B] [--tasks T ... | --suite S] [-o results] [--overwrite] [--cache DIR]
              [--first-stage MODEL|bm25] [--top-k 100]   (a reranker --model: Reranking, or Retrieval's first-stage top-k)
              [--chunk-tokens N] [--chunk-overlap N] [--chunk-boundary B] [--late-chunking] [--window-overlap N]
              [--chunk-aggregate max|mean]   (long documents: a document scores as its best or mean chunk)
gpte report RESULTS_DIR... [--plot chart.png]
gpte train RECIPE.yaml [--restart]
gpte merge MODEL MODEL... -o OUT [--method average|slerp|task_arithmetic] [--weights W...] [--t T]
           [--base MODEL] [--scale S] [--overwrite]
gpte whiten CORPUS -o OUT [--model M] [--field F] [--dims K] [--overwrite]
gpte index SOURCE --name NAME [--model M] [--backend B] [--device DEV] [--chunk-tokens N] [--overlap N] [--no-ann]
           [--rebuild] [--root DIR | --milvus URI] [--vectors-from DIR] [--chunk-boundary token|sentence]
           [--late-chunking [--window-overlap N]]
gpte embed-corpus SOURCE -o DIR [--model M] [--chunk-tokens N] [--overlap N] [--concurrency N] [--num-gpus G]
                  [--ray-address ADDR] [--overwrite]
gpte search NAME "query" [-k 10] [--mode dense|lexical|hybrid] [--dense-mode exact|hnsw|binary|int8] [--filter F=V]
            [--rerank [MODEL|llm]] [--json] [--root DIR | --milvus URI]
gpte mine PAIRS --corpus CORPUS -o OUT.jsonl [--model M] [--mode dense|lexical|hybrid] [--num-negatives 3]
          [--range-min 0] [--range-max 50] [--max-score S] [--min-score S] [--absolute-margin M] [--relative-margin M]
          [--sampling top|random] [--cross-encoder MODEL] [--index-dir DIR] [--restart] [--overwrite]
gpte synth queries|e5|paraphrase [SOURCE] -o OUT.jsonl [--generator LLM | openai:URL#MODEL] [--limit N] [--tasks N]
           [--examples FILE] [--max-attempts 3] [--round-trip-k 10] [--language en] [--restart] [--overwrite]
gpte analyze --data DIR -o OUT [--model M] [--sections S ...] [--corpus NAME[:SPLIT]] [--tasks T ...] [--labelled T]
             [--pairs T] [--inversion-train T] [--inversion-test T] [--whiten-dims K] [--save-whitened DIR] [--adaptive-probe] [--overwrite]
gpte rerank INPUT.jsonl [--model M] [-o OUT.jsonl] [--top-k K] [--batch-size N] [--raw-scores] [--overwrite]
gpte serve [--model M ...] [--reranker M ...] [--index NAME ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
           [--root DIR | --milvus URI] [--index-refresh SECONDS] [--public-docs] [--results DIR ...] [--map NAME=DIR ...]

One module per group of verbs, each holding its verbs' parser beside their handler and adding them in ``register``;
``gpte.cli.options`` spells the options they share, ``gpte.cli.logs`` decides what is logged. Results for the user
(vectors written, hits, tables) are printed on stdout; progress, warnings and errors go to stderr.

Building the parser imports no torch or transformers (each verb imports what it runs inside its handler), so
``gpte --help``, ``gpte VERB --help`` and ``gpte --version`` answer at once; tests/test_startup.py holds them to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpte._version import __version__
from gpte.cli import analyze, datagen, encode, evaluate, options, rerank, search, serve, train
from gpte.cli.logs import cli_logging
from gpte.errors import GpteError

VERB_MODULES = (encode, evaluate, train, search, rerank, datagen, analyze, serve)
USER_ERRORS = (
    GpteError,
    ValueError,
    TypeError,
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

__all__ = ["USER_ERRORS", "VERB_MODULES", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 1 a reported error, 130 interrupted, 141 stdout closed early, as
    by ``gpte search ... | head``: quietly, like a command killed by SIGPIPE)."""
    args = build_parser().parse_args(argv)
    with cli_logging(args.log_level):
        try:
            return args.run(args)
        except BrokenPipeError:
            _silence_stdout()
            return 141
        except USER_ERRORS as error:
            print(f"gpte: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(
                "gpte: interrupted; nothing was written under the output's final name (run it again: encode, index, "
                "mine and synth resume from their last finished chunk, train from its last checkpoint, evaluate from "
                "its last finished task)",
                file=sys.stderr,
            )
            return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe raises nothing (Python's
    documented recipe for SIGPIPE: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    """The ``gpte`` parser: ``--version``, the verbosity options, then each module's verbs; a verb's ``run`` is its
    handler."""
    parser = argparse.ArgumentParser(prog="gpte", description="General-purpose text embeddings.")
    parser.add_argument("--version", action="version", version=f"gpte {__version__}")
    options.add_verbosity(parser)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in VERB_MODULES:
        module.register(verbs)
    for verb in verbs.choices.values():  # -v/-q after the verb too; given there, they win
        options.add_verbosity(verb, default=argparse.SUPPRESS)
    return parser
