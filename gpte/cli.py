"""The ``gpte`` command: thin verbs over the library.

gpte encode INPUT -o OUTPUT [--model M] [--field F] [--role R] [--prompt P] [--task T]
            [--batch-size N] [--truncate-dim D] [--precision P] [--normalize | --no-normalize]
            [--device DEV] [--backend B] [--ranges R.npy] [--chunk-size N] [--overwrite] [--no-progress]
gpte distill-static -o FOLDER [--model M] [--pca-dims 256] [--sif 1e-4]
gpte evaluate --data DIR [--model M] [--tasks T ... | --suite S] [-o results] [--overwrite] [--cache DIR]
gpte report RESULTS_DIR... [--plot chart.png]
gpte train RECIPE.yaml [--restart]
gpte merge MODEL MODEL... -o OUT [--method average|slerp|task_arithmetic] [--weights W...] [--t T]
           [--base MODEL] [--scale S] [--overwrite]
gpte info [MODEL]
gpte index SOURCE --name NAME [--model M] [--chunk-tokens 256] [--overlap 32] [--no-ann] [--rebuild]
           [--root DIR | --milvus URI] [--vectors-from DIR]
gpte embed-corpus SOURCE -o DIR [--model M] [--chunk-tokens 256] [--overlap 32] [--concurrency N] [--num-gpus G]
                  [--ray-address ADDR] [--overwrite]
gpte search NAME "query" [-k 10] [--mode dense|lexical|hybrid] [--dense-mode exact|hnsw|binary|int8] [--filter F=V]
            [--rerank-llm | --rerank-model FOLDER] [--json] [--root DIR | --milvus URI]
gpte mine PAIRS --corpus CORPUS -o OUT.jsonl [--model M] [--mode dense|lexical|hybrid] [--num-negatives 3]
          [--range-min 0] [--range-max 50] [--max-score S] [--min-score S] [--absolute-margin M] [--relative-margin M]
          [--sampling top|random] [--cross-encoder FOLDER] [--index-dir DIR] [--restart] [--overwrite]
gpte synth queries|e5|paraphrase [SOURCE] -o OUT.jsonl [--generator LLM | openai:URL#MODEL] [--limit N] [--tasks N]
           [--examples FILE] [--max-attempts 3] [--round-trip-k 10] [--language en] [--restart] [--overwrite]
gpte analyze --data DIR -o OUT [--model M] [--sections S ...] [--corpus NAME[:SPLIT]] [--tasks T ...] [--labelled T]
             [--pairs T] [--inversion-train T] [--inversion-test T] [--whiten-dims K] [--save-whitened DIR] [--adaptive-probe] [--overwrite]
gpte whiten CORPUS -o OUT [--model M] [--field F] [--dims K] [--overwrite]
gpte serve [--model M ...] [--index NAME ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--root DIR | --milvus URI]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpte.atomic import refuse_existing
from gpte.data.readers import TEXT_FORMATS
from gpte.errors import GpteError
from gpte.models.backends import BACKENDS
from gpte.models.postprocess import PRECISIONS
from gpte.runtime.output import VECTOR_FORMATS, check_output
from gpte.runtime.quantization import load_ranges
from gpte.runtime.streaming import CHUNK_TEXTS

USER_ERRORS = (GpteError, ValueError, TypeError, FileExistsError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 1 a reported error, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"gpte: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "gpte: interrupted; no output was written (encode, mine and synth resume from their last finished chunk)",
            file=sys.stderr,
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpte", description="General-purpose text embeddings.")
    verbs = parser.add_subparsers(required=True, metavar="VERB")

    encode = verbs.add_parser("encode", help="embed the texts of a file and write the vectors")
    encode.add_argument("input", help=f"texts: {', '.join(TEXT_FORMATS)} (txt/md: one text per line)")
    encode.add_argument("-o", "--output", required=True, help=f"vectors: {', '.join(VECTOR_FORMATS)}")
    encode.add_argument(
        "--model", default=None, help="model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)"
    )
    encode.add_argument("--field", default=None, help="text field/column for jsonl, csv, tsv, parquet (default: text)")
    encode.add_argument("--role", default=None, help="query, document, or a prompt name of the model")
    encode.add_argument("--prompt", default=None, help="a prompt name, a template with {text}, or a prefix")
    encode.add_argument("--task", default=None, help="fills the prompt's {task} slot")
    encode.add_argument("--batch-size", type=int, default=32)
    encode.add_argument("--truncate-dim", type=int, default=None, help="keep the first D dimensions (Matryoshka)")
    encode.add_argument("--precision", default="float32", choices=PRECISIONS)
    encode.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None, help="default: the model's")
    encode.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    encode.add_argument(
        "--backend",
        default="torch",
        choices=(*BACKENDS, "static"),
        help="how the model runs (static: a distill-static folder)",
    )
    encode.add_argument(
        "--ranges", default=None, help="int8/uint8 calibration ranges (.npy from gpte.runtime.quantization.save_ranges)"
    )
    encode.add_argument(
        "--chunk-size", type=int, default=CHUNK_TEXTS, help="texts per chunk written (and resumed) at a time"
    )
    encode.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    encode.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_llm_options(encode)
    encode.set_defaults(run=_encode)

    evaluate = verbs.add_parser("evaluate", help="score a model on MTEB-style task folders")
    evaluate.add_argument(
        "--model", default=None, help="model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)"
    )
    evaluate.add_argument(
        "--data", required=True, help="a task folder, or a folder whose task folders (with meta.json) are found"
    )
    chosen = evaluate.add_mutually_exclusive_group()
    chosen.add_argument(
        "--tasks", nargs="+", default=None, help="only these tasks (full names, last parts, or glob patterns)"
    )
    chosen.add_argument(
        "--suite",
        default=None,
        help="a named suite (all, english, sts-multilingual, tatoeba, quick) or a .json file of task names",
    )
    evaluate.add_argument("-o", "--output", default="results", help="folder for result files (default: results)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--overwrite", action="store_true", help="recompute tasks that already have a result file")
    evaluate.add_argument(
        "--cache",
        default=None,
        help="a folder keeping text vectors across runs (texts found there are not encoded again)",
    )
    _add_llm_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    report = verbs.add_parser("report", help="compare result folders: table, per-type means, bar chart")
    report.add_argument("folders", nargs="+", help="result folders (one per model)")
    report.add_argument("--plot", default=None, help="write a bar chart of per-type means to this PNG")
    report.set_defaults(run=_report)

    distill = verbs.add_parser("distill-static", help="distil a static (model2vec-style) token table from a model")
    distill.add_argument("--model", default=None, help="source model (default: all-MiniLM-L6-v2)")
    distill.add_argument("-o", "--output", required=True, help="the static model folder to write")
    distill.add_argument("--pca-dims", type=int, default=256, help="PCA dimensions (0: keep the model's)")
    distill.add_argument("--sif", type=float, default=1e-4, help="SIF coefficient of the Zipf weighting (0: none)")
    distill.add_argument("--device", default=None)
    distill.add_argument("--overwrite", action="store_true")
    distill.add_argument("--no-progress", action="store_true")
    distill.set_defaults(run=_distill_static)

    train = verbs.add_parser("train", help="run a training recipe (YAML: stages of data, loss and settings)")
    train.add_argument("recipe", help="the recipe file")
    train.add_argument(
        "--restart", action="store_true", help="retrain every stage (default: keep finished stages, resume checkpoints)"
    )
    train.set_defaults(run=_train)

    merge = verbs.add_parser("merge", help="merge models of one architecture (soup, SLERP, task arithmetic)")
    merge.add_argument("models", nargs="+", help="model folders")
    merge.add_argument("-o", "--output", required=True, help="folder for the merged model")
    merge.add_argument("--method", default="average", help="average (default), slerp or task_arithmetic")
    merge.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per model")
    merge.add_argument("--t", type=float, default=0.5, help="slerp position: 0 = first model, 1 = second")
    merge.add_argument("--base", default=None, help="task arithmetic: the model the others were fine-tuned from")
    merge.add_argument("--scale", type=float, default=1.0, help="task arithmetic: scale of the summed task vectors")
    merge.add_argument("--overwrite", action="store_true")
    merge.set_defaults(run=_merge)

    info = verbs.add_parser("info", help="describe a model: backbone, parameters, dimension, pooling, prompts")
    info.add_argument("model", nargs="?", default=None, help="model name, folder, .gguf file or hub id")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)
    _add_search_verbs(verbs)
    return parser


MILVUS_HELP = "keep the index in Milvus: http://host:19530 (a server or cluster) or a Milvus Lite path ending in .db"


def _add_search_verbs(verbs: Any) -> None:
    index = verbs.add_parser("index", help="build or update a search index from document files")
    index.add_argument("source", help="a document file or folder (txt, md, jsonl, csv, tsv, parquet)")
    index.add_argument("--name", required=True, help="the index name")
    index.add_argument(
        "--model", default=None, help="the embedder (default: all-MiniLM-L6-v2; an existing index: its own)"
    )
    index.add_argument("--field", default="text", help="text field/column of jsonl, csv, tsv, parquet rows")
    index.add_argument("--chunk-tokens", type=int, default=256, help="tokens per chunk (0: whole documents)")
    index.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive chunks")
    index.add_argument("--no-ann", action="store_true", help="no HNSW graph (exact and binary search only)")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything instead of updating")
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument(
        "--root", default=None, help="folder of indexes (default: $GPTE_INDEXES or ~/.cache/gpte/indexes)"
    )
    index.add_argument("--milvus", default=None, metavar="URI", help=MILVUS_HELP)
    index.add_argument(
        "--vectors-from", default=None, metavar="DIR", help="ready-made chunk vectors from gpte embed-corpus"
    )
    index.add_argument("--no-progress", action="store_true")
    index.set_defaults(run=_index)

    corpus = verbs.add_parser(
        "embed-corpus",
        help="embed a document collection's chunks with a Ray Data pipeline (for gpte index --vectors-from)",
    )
    corpus.add_argument("source", help="a document file or folder (txt, md, jsonl, csv, tsv, parquet)")
    corpus.add_argument("-o", "--output", required=True, help="folder for the Parquet shards")
    corpus.add_argument("--model", default=None, help="the embedder (default: all-MiniLM-L6-v2)")
    corpus.add_argument("--field", default="text", help="text field/column of jsonl, csv, tsv, parquet rows")
    corpus.add_argument(
        "--chunk-tokens", type=int, default=256, help="tokens per chunk (0: whole documents); as the index's"
    )
    corpus.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive chunks; as the index's")
    corpus.add_argument("--batch-size", type=int, default=32)
    corpus.add_argument("--concurrency", type=int, default=1, help="embedding actors")
    corpus.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    corpus.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    corpus.add_argument("--ray-address", default=None, help="a Ray cluster to run on (default: a local Ray)")
    corpus.add_argument("--overwrite", action="store_true")
    corpus.set_defaults(run=_embed_corpus)

    search = verbs.add_parser("search", help="search an index: ranked hits with scores and snippets")
    search.add_argument("name", help="the index name")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=10, help="hits to show")
    search.add_argument("--mode", default="dense", help="dense, lexical or hybrid")
    search.add_argument(
        "--dense-mode",
        default=None,
        help="exact, hnsw, binary or int8 (quantized codes, float rescoring); default: exact (Milvus: its index)",
    )
    search.add_argument("--fusion", default="rrf", help="hybrid fusion: rrf or weighted")
    search.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE", help="metadata filter (repeatable)"
    )
    rerank = search.add_mutually_exclusive_group()
    rerank.add_argument("--rerank-model", default=None, help="a cross-encoder folder to rerank the top candidates")
    rerank.add_argument(
        "--rerank-llm",
        nargs="?",
        const="smollm2-135m-instruct",
        default=None,
        help="rerank with an LLM's yes/no logits",
    )
    search.add_argument("--json", action="store_true", help="print JSON")
    search.add_argument("--root", default=None)
    search.add_argument("--milvus", default=None, metavar="URI", help=MILVUS_HELP)
    search.set_defaults(run=_search)

    mine = verbs.add_parser(
        "mine", help="mine hard negatives for (query, positive) pairs from a corpus (output: gpte train's format)"
    )
    mine.add_argument(
        "pairs", help="a jsonl/csv/tsv/parquet file (query + positive_id | positive_ids | positive) or a BEIR folder"
    )
    mine.add_argument(
        "--corpus",
        default=None,
        help="documents (_id/id, text, optional title); default: PAIRS/corpus.jsonl for a BEIR folder",
    )
    mine.add_argument("-o", "--output", required=True, help="the jsonl file to write")
    mine.add_argument("--model", default=None, help="the retriever (default: all-MiniLM-L6-v2)")
    mine.add_argument("--mode", default="dense", help="candidates from dense, lexical (BM25) or hybrid retrieval")
    mine.add_argument("--num-negatives", type=int, default=3, help="negatives per pair")
    mine.add_argument("--range-min", type=int, default=0, help="skip the best N candidates")
    mine.add_argument("--range-max", type=int, default=50, help="consider the best N candidates")
    mine.add_argument("--max-score", type=float, default=None, help="keep candidates scored at most this")
    mine.add_argument("--min-score", type=float, default=None, help="keep candidates scored at least this")
    mine.add_argument("--absolute-margin", type=float, default=None, help="keep candidates scored <= positive - margin")
    mine.add_argument(
        "--relative-margin",
        type=float,
        default=None,
        help="keep candidates scored <= positive * (1 - margin); NV-Retriever: 0.05",
    )
    mine.add_argument("--sampling", default="top", help="top (the best remaining) or random (a sample of them)")
    mine.add_argument(
        "--cross-encoder", default=None, metavar="FOLDER", help="rescore candidates and positives with a cross-encoder"
    )
    mine.add_argument("--split", default="train", help="the qrels split of a BEIR folder")
    mine.add_argument("--field", default="text", help="text field of the corpus rows")
    mine.add_argument(
        "--index-dir", default=None, help="the corpus index folder (default: OUTPUT.index, reused by later runs)"
    )
    mine.add_argument("--seed", type=int, default=12345)
    _add_job_options(mine)
    mine.set_defaults(run=_mine)

    synth = verbs.add_parser(
        "synth", help="synthesize training data with an LLM: queries, e5 (task → JSON triples) or paraphrase"
    )
    synth.add_argument("recipe", help="queries (InPars/Promptagator), e5 (E5-mistral two-step) or paraphrase (SynCSE)")
    synth.add_argument(
        "source",
        nargs="?",
        default=None,
        help="queries: a corpus; paraphrase: sentences; e5: a task file (default: brainstormed)",
    )
    synth.add_argument("-o", "--output", required=True, help="the jsonl file to write")
    synth.add_argument(
        "--generator",
        default=None,
        help="a causal LM (name, folder, .gguf) or openai:BASE_URL#MODEL (default: smollm2-135m-instruct)",
    )
    synth.add_argument("--field", default="text", help="text field of jsonl/csv/parquet sources")
    synth.add_argument("--limit", type=int, default=None, help="use the first N inputs")
    synth.add_argument("--tasks", type=int, default=20, help="e5 without a task file: tasks to brainstorm")
    synth.add_argument("--per-task", type=int, default=1, help="e5: examples per task")
    synth.add_argument(
        "--examples", default=None, help="queries: few-shot examples, a jsonl file with document and query fields"
    )
    synth.add_argument("--max-attempts", type=int, default=3, help="tries per input before it counts as unparsable")
    synth.add_argument("--max-new-tokens", type=int, default=None)
    synth.add_argument("--temperature", type=float, default=0.7)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--generator-batch-size", type=int, default=16)
    synth.add_argument("--min-words", type=int, default=2)
    synth.add_argument("--max-words", type=int, default=1024)
    synth.add_argument("--language", default="en", help="keep texts identified as this ISO 639-1 language ('' for any)")
    synth.add_argument("--no-dedup", action="store_true")
    synth.add_argument(
        "--round-trip-k",
        type=int,
        default=10,
        help="queries: keep a query when its document ranks in the top K (0: no round trip)",
    )
    synth.add_argument("--model", default=None, help="the round-trip retriever (default: all-MiniLM-L6-v2)")
    synth.add_argument("--index-dir", default=None, help="queries: the corpus index folder (default: OUTPUT.index)")
    _add_job_options(synth)
    synth.set_defaults(run=_synth)

    analyze = verbs.add_parser(
        "analyze", help="understand a model: geometry, whitening, efficiency curves, inversion risk, bias, report"
    )
    analyze.add_argument(
        "--model", default=None, help="model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)"
    )
    analyze.add_argument("--data", required=True, help="the folder holding the task folders named below")
    analyze.add_argument(
        "-o", "--output", required=True, help="report folder (sections/, PNG figures, report.md); a rerun resumes it"
    )
    analyze.add_argument(
        "--sections", nargs="+", default=None, help="only these sections (default: all, gpte.analysis.SECTIONS)"
    )
    analyze.add_argument(
        "--corpus", default="sts/stsb-en:train", help="NAME[:SPLIT] whose texts fit whitening and geometry"
    )
    analyze.add_argument(
        "--tasks",
        nargs="*",
        default=["sts/stsb-en", "retrieval/cranfield"],
        help="tasks scored (whitening, curves, defense costs)",
    )
    analyze.add_argument(
        "--labelled", default="classification/banking77", help="labelled task for the 2-D map ('' for none)"
    )
    analyze.add_argument(
        "--pairs", default="sts/stsb-en", help="STS or pair-classification task for the histogram ('' for none)"
    )
    analyze.add_argument(
        "--inversion-train", default="sts/stsb-en:train", help="sentences the inversion probe learns from"
    )
    analyze.add_argument("--inversion-test", default="sts/sick-r", help="sentences it is tested on ('' to skip)")
    analyze.add_argument("--inversion-test-size", type=int, default=1000, help="test sentences drawn (seeded)")
    analyze.add_argument("--probe-epochs", type=int, default=None, help="inversion probe training epochs")
    analyze.add_argument(
        "--adaptive-probe", action="store_true", help="also retrain the probe on each defense's vectors"
    )
    analyze.add_argument("--whiten-dims", type=int, default=None, help="dimensions kept by whitening (default: all)")
    analyze.add_argument("--save-whitened", default=None, help="save the whitened model in this folder")
    analyze.add_argument("--batch-size", type=int, default=32)
    analyze.add_argument("--device", default=None)
    analyze.add_argument("--overwrite", action="store_true", help="recompute finished sections")
    _add_llm_options(analyze)
    analyze.set_defaults(run=_analyze)

    whiten = verbs.add_parser(
        "whiten", help="fit whitening (Su et al. 2021) on a corpus and save the model with it as a step"
    )
    whiten.add_argument("corpus", help="text file (txt/jsonl/csv/tsv/parquet) whose texts fit the whitening")
    whiten.add_argument(
        "-o", "--output", required=True, help="folder for the whitened model (sentence-transformers layout)"
    )
    whiten.add_argument("--model", default=None)
    whiten.add_argument("--field", default=None, help="the text field of jsonl/csv/tsv/parquet files")
    whiten.add_argument("--dims", type=int, default=None, help="dimensions kept (whitening + PCA; default: all)")
    whiten.add_argument("--batch-size", type=int, default=32)
    whiten.add_argument("--device", default=None)
    whiten.add_argument("--overwrite", action="store_true")
    whiten.set_defaults(run=_whiten)

    serve = verbs.add_parser("serve", help="HTTP API: OpenAI-compatible /v1/embeddings, /search, /health, /metrics")
    serve.add_argument(
        "--model", action="append", default=None, help="model to serve (repeatable; default: all-MiniLM-L6-v2)"
    )
    serve.add_argument("--index", action="append", default=[], help="index name to serve (repeatable)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key", default=None, help="require Authorization: Bearer KEY (default: $GPTE_API_KEY if set)"
    )
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20)
    serve.add_argument("--root", default=None)
    serve.add_argument("--milvus", default=None, metavar="URI", help=MILVUS_HELP + " (for every --index)")
    serve.set_defaults(run=_serve)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """Options of the chunked, resumable data jobs (``gpte.datagen.resumable``)."""
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=None, help="inputs per finished (resumable) chunk")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument(
        "--restart", action="store_true", help="discard an interrupted run's progress instead of resuming it"
    )
    parser.add_argument("--no-progress", action="store_true")


def _mine(args: argparse.Namespace) -> int:
    from gpte.datagen.mining import CHUNK_QUERIES, mine_hard_negatives
    from gpte.datagen.negatives import NegativeRules

    corpus = args.corpus or (Path(args.pairs) / "corpus.jsonl" if Path(args.pairs).is_dir() else None)
    if corpus is None:
        raise ValueError("--corpus is needed unless PAIRS is a BEIR folder with a corpus.jsonl")
    rules = NegativeRules(
        args.num_negatives,
        args.range_min,
        args.range_max,
        args.max_score,
        args.min_score,
        args.absolute_margin,
        args.relative_margin,
        args.sampling,
        args.seed,
    )
    cross_encoder = None
    if args.cross_encoder:
        from gpte.search.rerank import CrossEncoderReranker

        cross_encoder = CrossEncoderReranker(args.cross_encoder)
    report = mine_hard_negatives(
        args.pairs,
        corpus,
        args.output,
        model=args.model,
        rules=rules,
        mode=args.mode,
        cross_encoder=cross_encoder,
        split=args.split,
        text_field=args.field,
        index_dir=args.index_dir,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size or CHUNK_QUERIES,
        overwrite=args.overwrite,
        restart=args.restart,
        show_progress=not args.no_progress,
    )
    missing = f" (e.g. {'; '.join(report.missing_examples)})" if report.missing_examples else ""
    print(
        f"mined {report.negatives} negatives for {report.written} pairs of {report.queries} queries into {args.output}; "
        f"skipped {report.missing_positive} pairs whose positive is not in the corpus{missing} and {report.too_few_negatives} "
        f"with fewer than {rules.num_negatives} negatives passing the rules; {report.resumed_chunks} chunks resumed, {report.seconds:.1f} s"
    )
    return 0


def _synth(args: argparse.Namespace) -> int:
    from gpte.data.readers import iter_records
    from gpte.datagen.generators import load_generator
    from gpte.datagen.synthesis import CHUNK_ITEMS, synthesize
    from gpte.datagen.synthesis_filters import SynthesisFilters
    from gpte.models.causal_lm import DEFAULT_LLM

    filters = SynthesisFilters(
        args.min_words, args.max_words, args.language or None, not args.no_dedup, args.round_trip_k or None
    )
    examples = (
        [(str(row["document"]), str(row["query"])) for _, row in iter_records(args.examples)] if args.examples else None
    )
    generator = load_generator(args.generator or DEFAULT_LLM, batch_size=args.generator_batch_size)
    report = synthesize(
        args.recipe,
        args.output,
        args.source,
        generator,
        text_field=args.field,
        limit=args.limit,
        tasks=args.tasks,
        per_task=args.per_task,
        examples=examples,
        filters=filters,
        model=args.model,
        index_dir=args.index_dir,
        max_attempts=args.max_attempts,
        chunk_size=args.chunk_size or CHUNK_ITEMS,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        overwrite=args.overwrite,
        restart=args.restart,
        show_progress=not args.no_progress,
    )
    removed = ", ".join(f"{count} {reason}" for reason, count in sorted(report.removed.items())) or "none"
    print(
        f"{args.recipe}: {report.items} inputs, {report.parsed} parsed answers, kept {report.kept} in {args.output}; "
        f"removed: {removed}; {report.generator_calls} generator calls, {report.resumed_chunks} chunks resumed, {report.seconds:.1f} s"
    )
    return 0


def _add_llm_options(parser: argparse.ArgumentParser) -> None:
    """Options that turn a decoder LLM into an embedder (``gpte.models.attention``, ``gpte.models.extraction``)."""
    parser.add_argument("--attention", default=None, help="decoders: causal or bidirectional (default: the model's)")
    parser.add_argument(
        "--extraction",
        default=None,
        help="a named prompt + pooling for LLMs: prompteol, echo, ... (gpte.models.extraction)",
    )


def _llm_options(args: argparse.Namespace) -> dict[str, str]:
    return {name: getattr(args, name) for name in ("attention", "extraction") if getattr(args, name)}


def _encode(args: argparse.Namespace) -> int:
    from gpte.runtime.streaming import encode_to

    output = check_output(args.output, args.overwrite)
    embedder = _load_model(args.model, args.backend, args.device, _llm_options(args))
    options = {"role": args.role, "normalize": args.normalize}
    if args.backend != "static":
        options |= {
            "prompt": args.prompt,
            "task": args.task,
            "batch_size": args.batch_size,
            "truncate_dim": args.truncate_dim,
        }
    ranges = load_ranges(args.ranges) if args.ranges else None
    report = encode_to(
        embedder,
        args.input,
        output,
        field=args.field,
        chunk_size=args.chunk_size,
        precision=args.precision,
        ranges=ranges,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        **options,
    )
    resumed = f", {report.n_resumed_chunks} chunks kept from an interrupted run" if report.n_resumed_chunks else ""
    print(
        f"wrote {report.n_texts} vectors of {report.n_columns} {args.precision} values to {output} "
        f"({report.n_truncated} truncated to the model's maximum length{resumed}, {report.seconds:.1f} s)"
    )
    return 0


def _load_model(model: str | None, backend: str, device: str | None, llm_options: dict[str, str]) -> Any:
    """An Embedder with ``backend`` (and the attention/extraction options given), or a StaticEmbedder folder
    for ``static``."""
    if backend == "static":
        if llm_options:
            raise ValueError("--attention and --extraction apply to transformer models, not to --backend static")
        from gpte.models.static import StaticEmbedder

        if model is None:
            raise ValueError("--backend static needs --model FOLDER, a folder written by gpte distill-static")
        return StaticEmbedder.load(model)
    from gpte.models.embedder import Embedder

    return Embedder.load(model, device=device, backend=backend, **llm_options)


def _distill_static(args: argparse.Namespace) -> int:
    from gpte.models.embedder import Embedder
    from gpte.models.static import distill_static

    refuse_existing(Path(args.output), args.overwrite)  # before the minutes of distillation, not after
    static = distill_static(
        Embedder.load(args.model, device=args.device), args.pca_dims or None, args.sif or None, not args.no_progress
    )
    static.save(args.output, overwrite=args.overwrite)
    print(f"wrote a static model of {len(static.table)} tokens x {static.dimension} dimensions to {args.output}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from gpte.evaluate import discover_tasks, evaluate, select_tasks
    from gpte.evaluate.report import format_table
    from gpte.evaluate.suites import suite_patterns
    from gpte.models.embedder import Embedder

    tasks = select_tasks(discover_tasks(args.data), suite_patterns(args.suite) if args.suite else args.tasks)
    embedder = Embedder.load(args.model, device=args.device, **_llm_options(args))
    run = evaluate(embedder, tasks, args.output, overwrite=args.overwrite, batch_size=args.batch_size, cache=args.cache)
    if run.results:
        print(format_table({embedder.name: run.results}))
    for name, error in run.failures.items():
        print(f"gpte: task {name} failed: {error}", file=sys.stderr)
    return 1 if run.failures else 0


def _analyze(args: argparse.Namespace) -> int:
    from gpte.analysis.analyze import Analysis, inputs_from_tasks
    from gpte.analysis.inversion import ProbeConfig
    from gpte.models.embedder import Embedder

    probe = ProbeConfig(**({"epochs": args.probe_epochs} if args.probe_epochs else {}))
    inputs = inputs_from_tasks(
        args.data,
        args.corpus,
        args.tasks,
        args.labelled or None,
        args.pairs or None,
        args.inversion_train or None,
        args.inversion_test or None,
        args.inversion_test_size,
        whiten_dims=args.whiten_dims,
        probe=probe,
        adaptive_probe=args.adaptive_probe,
        save_whitened=Path(args.save_whitened) if args.save_whitened else None,
    )
    embedder = Embedder.load(args.model, device=args.device, **_llm_options(args))
    report = Analysis(embedder, inputs, args.output, args.batch_size).run(args.sections, args.overwrite)
    print(f"wrote {report}")
    return 0


def _whiten(args: argparse.Namespace) -> int:
    from gpte.analysis.geometry import anisotropy
    from gpte.analysis.whitening import add_whitening, fit_whitening
    from gpte.data.readers import read_texts
    from gpte.models.embedder import Embedder

    refuse_existing(Path(args.output), args.overwrite)
    texts = read_texts(args.corpus, args.field)
    embedder = Embedder.load(args.model, device=args.device)
    vectors = embedder.encode(texts, batch_size=args.batch_size, normalize=False)
    whitening = fit_whitening(vectors, args.dims)
    add_whitening(embedder, whitening).save(args.output, overwrite=args.overwrite)
    print(
        f"whitened on {len(texts)} texts ({whitening.matrix.shape[1]} dimensions): mean pairwise cosine "
        f"{anisotropy(vectors):.4f} -> {anisotropy(whitening.apply(vectors)):.4f}; saved {args.output}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from gpte.evaluate.report import bar_chart, collect, format_table

    table = collect([Path(folder) for folder in args.folders])
    print(format_table(table))
    if args.plot:
        print(f"wrote {bar_chart(table, Path(args.plot))}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from gpte.train.recipe import load_recipe, run_recipe

    folders = run_recipe(load_recipe(args.recipe), resume=not args.restart)
    for folder in folders:
        print(f"model: {folder}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from gpte.train.merging import merge_models

    refuse_existing(Path(args.output), args.overwrite)
    merged = merge_models(args.models, args.method, args.weights, args.t, args.base, args.scale)
    merged.save(args.output, overwrite=args.overwrite)
    print(f"wrote the {args.method} merge of {len(args.models)} models to {args.output}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from gpte.models.embedder import Embedder

    info = Embedder.load(args.model).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            shown = f"{value:,}" if key == "parameters" else value
            print(f"{key:<{width}}  {shown}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from gpte.search.index import build_index, index_path
    from gpte.search.milvus import build_milvus_index

    options = {
        "model": args.model,
        "chunk_tokens": args.chunk_tokens,
        "overlap": args.overlap,
        "ann": None if args.no_ann else "hnsw",
        "text_field": args.field,
        "batch_size": args.batch_size,
        "rebuild": args.rebuild,
        "show_progress": not args.no_progress,
        "vectors_from": args.vectors_from,
    }
    if args.milvus:
        where = f"Milvus {args.milvus}"
        report = build_milvus_index(args.milvus, args.name, args.source, **options)
    else:
        where = index_path(args.name, args.root)
        report = build_index(where, args.source, **options)
    print(
        f"index {args.name} ({where}): {report.documents} documents ({report.added} added, {report.changed} changed, "
        f"{report.removed} removed, {report.unchanged} unchanged), {report.chunks} chunks; embedded {report.embedded}, "
        f"kept {report.resumed} from an interrupted run, took {report.ready} ready-made; {report.seconds:.1f} s"
    )
    return 0


def _embed_corpus(args: argparse.Namespace) -> int:
    from gpte.search.distributed import embed_corpus_ray

    if args.ray_address:
        import ray

        ray.init(address=args.ray_address)
    count = embed_corpus_ray(
        args.source,
        args.output,
        model=args.model,
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
        text_field=args.field,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        overwrite=args.overwrite,
    )
    print(
        f"{count} chunks embedded into {args.output}; build the index with gpte index {args.source} --name NAME --vectors-from {args.output}"
    )
    return 0


def _open_index(name: str, args: argparse.Namespace) -> Any:
    """The index ``name``: in Milvus with --milvus, else on disk under --root."""
    if args.milvus:
        from gpte.search.milvus import MilvusIndex

        return MilvusIndex.open(args.milvus, name)
    from gpte.search.index import Index, index_path

    return Index.open(index_path(name, args.root))


def _search(args: argparse.Namespace) -> int:
    index = _open_index(args.name, args)
    dense_mode = {"dense_mode": args.dense_mode} if args.dense_mode else {}
    hits = index.search(
        args.query,
        k=args.k,
        mode=args.mode,
        fusion=args.fusion,
        filters=_filters(args.filter),
        reranker=_reranker(args),
        **dense_mode,
    )
    if args.json:
        print(json.dumps([hit.__dict__ for hit in hits], ensure_ascii=False, indent=2))
        return 0
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        print(f"{rank:>3}. {hit.score:8.4f}  {hit.doc_id}\n     {snippet[:200]}{'...' if len(snippet) > 200 else ''}")
    return 0


def _filters(pairs: list[str]) -> dict[str, Any] | None:
    """``FIELD=VALUE`` pairs as filters; a VALUE that parses as JSON (1960, true, [1, 2]) is taken as such."""
    filters: dict[str, Any] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise ValueError(f"--filter {pair!r}: write FIELD=VALUE")
        try:
            filters[field] = json.loads(value)
        except json.JSONDecodeError:
            filters[field] = value
    return filters or None


def _reranker(args: argparse.Namespace) -> Any:
    from gpte.search.rerank import CrossEncoderReranker, LLMReranker

    if args.rerank_model:
        return CrossEncoderReranker(args.rerank_model)
    return LLMReranker(args.rerank_llm) if args.rerank_llm else None


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from gpte.models.embedder import Embedder
    from gpte.serve.app import create_app

    models = {}
    for name in args.model or [None]:
        model = Embedder.load(name)
        models[Path(name).name if name else model.name] = model
    indexes = {name: _open_index(name, args) for name in args.index}
    api_key = args.api_key or os.environ.get("GPTE_API_KEY")
    app = create_app(models, indexes, api_key=api_key, max_request_bytes=args.max_request_bytes)
    print(
        f"serving models {', '.join(models)} and indexes {', '.join(indexes) or 'none'} on http://{args.host}:{args.port}"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
