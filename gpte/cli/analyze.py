"""``gpte analyze``: understand a model (geometry, whitening, efficiency curves, inversion risk, bias) in a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpte.cli import options


def register(verbs: Any) -> None:
    analyze = verbs.add_parser(
        "analyze", help="understand a model: geometry, whitening, efficiency curves, inversion risk, bias, report"
    )
    options.add_model(analyze)
    analyze.add_argument("--data", required=True, help="the folder holding the task folders named below")
    options.add_output(analyze, "report folder (sections/, PNG figures, report.md); a rerun resumes it")
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
    options.add_batch_size(analyze)
    options.add_device(analyze)
    analyze.add_argument("--overwrite", action="store_true", help="recompute finished sections")
    options.add_llm_options(analyze)
    analyze.set_defaults(run=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    """``gpte analyze``: the options, task rows and output folders are checked, and the report folder locked, before
    the model loads."""
    from gpte.analysis.analyze import Analysis, check_sections, inputs_from_tasks
    from gpte.analysis.inversion import ProbeConfig
    from gpte.atomic import check_destination
    from gpte.locking import exclusive_output
    from gpte.models.embedder import Embedder

    check_sections(args.sections)
    probe = ProbeConfig(**({"epochs": args.probe_epochs} if args.probe_epochs is not None else {}))
    probe.check()
    output = check_destination(args.output, overwrite=True, folder=True)  # an existing report folder is resumed
    save_whitened = Path(args.save_whitened) if args.save_whitened else None
    if save_whitened:
        check_destination(save_whitened, overwrite=True, folder=True)
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
        save_whitened=save_whitened,
    )
    with exclusive_output(output, "report folder"):  # a second run on OUTPUT fails at once, not after the model loads
        embedder = Embedder.load(args.model, device=args.device, **options.llm_options(args))
        report = Analysis(embedder, inputs, output, args.batch_size).run(args.sections, args.overwrite)
    print(f"wrote {report}")
    return 0
