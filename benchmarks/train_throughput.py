"""Training throughput: gpte's trainer against sentence-transformers' trainer, same model, loss, data,
batch size and steps, in one run; then the peak memory of GradCache at batch 1024 beside plain training
at batch 64.

Model: all-MiniLM-L6-v2 (packaged). Data: STS Benchmark en train pairs (sentence1 -> sentence2) from
../shared/data. Loss: in-batch-negatives InfoNCE, scale 20 (sentence-transformers'
MultipleNegativesRankingLoss), no-duplicates batches, AdamW lr 2e-5. Each trainer runs in its own child
process, rounds interleaved; examples/s is the median over rounds of rows trained / wall time of
``trainer.train()`` (model loading excluded). Memory: peak RSS (CPU) or peak allocated GPU memory of a
child process that runs a few steps, minus that of a child that loads the same model and data and runs
none.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 32] [--steps 40] [--repeats 3]
                                          [--threads N] [--no-memory] [--model FOLDER] [--data JSONL]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = SHARED / "sts" / "stsb-en" / "train.jsonl"


def _pairs(path: str, limit: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [{"anchor": r["sentence1"], "positive": r["sentence2"]} for r in rows][:limit]


def run_gpte(args: argparse.Namespace, output: Path) -> dict:
    from gpte import Embedder
    from gpte.data.training import TrainingData, TrainingExample
    from gpte.train.config import TrainingConfig
    from gpte.train.losses import build_loss
    from gpte.train.trainer import train

    rows = _pairs(args.data, args.batch_size * args.steps)
    model = Embedder.load(args.model, device=args.device)
    data = TrainingData("stsb", ["anchor", "positive"], [TrainingExample((r["anchor"], r["positive"])) for r in rows])
    loss = {"name": "infonce", "temperature": 0.05}
    if args.gradcache:
        loss["gradcache"] = {"mini_batch_size": args.gradcache}
    config = TrainingConfig(
        max_steps=args.steps, batch_size=args.batch_size, save_steps=100_000, logging_steps=10_000, mixed_precision="no"
    )
    _reset_peak(args.device)
    start = time.perf_counter()
    if args.steps:
        train(model, build_loss(loss, model), [data], config, output, resume=False)
    return {"seconds": time.perf_counter() - start, "rows": args.batch_size * args.steps}


def run_st(args: argparse.Namespace, output: Path) -> dict:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from gpte.models.sources import resolve_model

    model = SentenceTransformer(str(resolve_model(args.model).folder), device=args.device)
    dataset = Dataset.from_list(_pairs(args.data, args.batch_size * args.steps))
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(output),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=2e-5,
        warmup_steps=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to=[],
        logging_steps=10_000,
        use_cpu=args.device == "cpu",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=arguments, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model, scale=20.0)
    )
    start = time.perf_counter()
    trainer.train()
    return {"seconds": time.perf_counter() - start, "rows": args.batch_size * args.steps}


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_bytes(device: str) -> int:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        result = (run_st if args.runner == "st" else run_gpte)(args, Path(folder))
    result["peak_bytes"] = _peak_bytes(args.device)
    print(json.dumps(result))


def spawn(args: argparse.Namespace, runner: str, batch_size: int, steps: int, gradcache: int = 0) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        runner,
        "--device",
        args.device,
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
        "--threads",
        str(args.threads),
        "--gradcache",
        str(gradcache),
        "--data",
        args.data,
    ] + (["--model", args.model] if args.model else [])
    output = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if output.returncode:
        raise RuntimeError(f"{runner} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=str(DATA), help="jsonl with sentence1/sentence2 (default: STS-B en train)")
    parser.add_argument("--child", choices=["gpte", "st"], dest="runner", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gradcache", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        child(args)
        return
    rates: dict[str, list[float]] = {"gpte": [], "sentence-transformers": []}
    for round_number in range(args.repeats):
        for name, runner in (("gpte", "gpte"), ("sentence-transformers", "st")):
            result = spawn(args, runner, args.batch_size, args.steps)
            rates[name].append(result["rows"] / result["seconds"])
            print(f"round {round_number + 1} {name}: {rates[name][-1]:.1f} examples/s", flush=True)
    gpte_rate, st_rate = (statistics.median(rates[k]) for k in ("gpte", "sentence-transformers"))
    print(
        f"\nInfoNCE/MNRL, all-MiniLM-L6-v2, batch {args.batch_size}, {args.steps} steps, {args.device}, {args.threads} threads"
    )
    print(f"gpte                  {gpte_rate:8.1f} examples/s")
    print(f"sentence-transformers {st_rate:8.1f} examples/s")
    print(f"ratio gpte / ST       {gpte_rate / st_rate:8.2f}x")
    if not args.no_memory:
        base = spawn(args, "gpte", 64, 0)["peak_bytes"]
        plain = spawn(args, "gpte", 64, 3)["peak_bytes"]
        cached = spawn(args, "gpte", 1024, 3, gradcache=64)["peak_bytes"]
        unit = 2**20
        print(f"\npeak memory above loading ({'GPU allocated' if args.device == 'cuda' else 'process RSS'}), 3 steps:")
        print(f"plain     batch   64: {(plain - base) / unit:8.0f} MiB")
        print(f"GradCache batch 1024 (mini-batch 64): {(cached - base) / unit:8.0f} MiB")


if __name__ == "__main__":
    main()
