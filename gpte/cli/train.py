"""Verbs that make models: ``gpte train``, ``gpte merge``, ``gpte whiten``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpte.atomic import refuse_existing
from gpte.cli import options


def register(verbs: Any) -> None:
    train = verbs.add_parser("train", help="run a training recipe (YAML: stages of data, loss and settings)")
    train.add_argument("recipe", help="the recipe file")
    train.add_argument(
        "--restart", action="store_true", help="retrain every stage (default: keep finished stages, resume checkpoints)"
    )
    train.set_defaults(run=_train)

    merge = verbs.add_parser("merge", help="merge models of one architecture (soup, SLERP, task arithmetic)")
    merge.add_argument("models", nargs="+", help="model folders")
    options.add_output(merge, "folder for the merged model")
    merge.add_argument("--method", default="average", help="average (default), slerp or task_arithmetic")
    merge.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per model")
    merge.add_argument("--t", type=float, default=0.5, help="slerp position: 0 = first model, 1 = second")
    merge.add_argument("--base", default=None, help="task arithmetic: the model the others were fine-tuned from")
    merge.add_argument("--scale", type=float, default=1.0, help="task arithmetic: scale of the summed task vectors")
    merge.add_argument("--overwrite", action="store_true")
    merge.set_defaults(run=_merge)

    whiten = verbs.add_parser(
        "whiten", help="fit whitening (Su et al. 2021) on a corpus and save the model with it as a step"
    )
    whiten.add_argument("corpus", help="text file (txt/jsonl/csv/tsv/parquet) whose texts fit the whitening")
    options.add_output(whiten, "folder for the whitened model (sentence-transformers layout)")
    options.add_model(whiten)
    whiten.add_argument("--field", default=None, help="the text field of jsonl/csv/tsv/parquet files")
    whiten.add_argument("--dims", type=int, default=None, help="dimensions kept (whitening + PCA; default: all)")
    options.add_batch_size(whiten)
    options.add_device(whiten)
    whiten.add_argument("--overwrite", action="store_true")
    whiten.set_defaults(run=_whiten)


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
