"""Encode throughput: every gpte backend against sentence-transformers, same model, data, batch size and
threads, in one run.

Data: the distinct STS Benchmark en test sentences (short) and the Cranfield documents (long), from
../shared/data. For each runner: sentences/s and tokens/s (median over ``--repeats`` interleaved rounds
after a warm-up), the ratio to sentence-transformers' default backend, the largest difference from
gpte's float32 vectors, and the fraction of the machine's measured float32 matmul FLOP/s that the
model's FLOPs per token reach. ``--stream`` also streams 1M short texts to a file through the static
backend in a child process and prints its peak RSS.

    python benchmarks/encode_throughput.py [--device cpu|cuda] [--batch-size 32] [--threads N] [--repeats 3]
                                           [--model FOLDER] [--data STS_JSONL] [--backends torch onnx ...]
                                           [--no-long] [--stream]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpte import Embedder
from gpte.errors import BackendUnavailableError
from gpte.models.sources import resolve_model
from gpte.models.static import distill_static

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = SHARED / "sts" / "stsb-en" / "test.jsonl"
LONG = SHARED / "retrieval" / "cranfield" / "corpus.jsonl"


def stsb_sentences(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))


def cranfield_documents(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return list(dict.fromkeys(f"{r.get('title', '')} {r['text']}".strip() for r in rows))


def matmul_flops(device: str) -> float:
    """Measured float32 FLOP/s of a large matrix product (the machine's practical peak)."""
    a = torch.randn(2048, 2048, device=device)
    torch.mm(a, a)
    repeats = 10
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, a)
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * 2 * 2048**3 / (time.perf_counter() - start)


def flops_per_token(model: Embedder, mean_tokens: float) -> float:
    """2 x non-embedding parameters (the matmuls) + attention's 4 x layers x sequence x hidden."""
    embedding_parameters = sum(p.numel() for n, p in model.backbone.model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.backbone.model.parameters()) - embedding_parameters
    return 2 * dense + 4 * model.backbone.num_layers * mean_tokens * model.backbone.hidden_size


def runners(folder: str, args: argparse.Namespace) -> dict:
    """name -> encode function; a backend that cannot run here is reported and left out."""
    found = {}
    for backend in args.backends:
        if backend == "static":
            static = distill_static(Embedder.load(folder, device=args.device), pca_dims=256, show_progress=False)
            found["gpte static (PCA 256)"] = lambda texts, m=static: m.encode(texts)
            continue
        try:
            model = Embedder.load(folder, device=args.device, backend=backend)
        except BackendUnavailableError as error:
            print(f"  (gpte {backend}: not run here: {error})")
            continue
        found[f"gpte {backend}"] = lambda texts, m=model: m.encode(texts, batch_size=args.batch_size, show_progress=False)
    from sentence_transformers import SentenceTransformer, __version__ as st_version

    default = SentenceTransformer(folder, device=args.device)
    found[f"ST {st_version} default"] = lambda texts: default.encode(texts, batch_size=args.batch_size)
    for name, options in (("onnx", {}), ("onnx int8", {"file_name": "onnx/model_qint8_avx2.onnx"})):
        try:
            model = SentenceTransformer(folder, device=args.device, backend="onnx", model_kwargs=options)
        except Exception as error:  # noqa: BLE001 - optimum missing, or the export failing: both mean "not here"
            print(f"  (ST {name}: not installable/runnable here: {type(error).__name__}: {str(error)[:120]})")
            continue
        found[f"ST {st_version} {name}"] = lambda texts, m=model: m.encode(texts, batch_size=args.batch_size)
    return found


def measure(name_to_encode: dict, texts: list[str], repeats: int) -> tuple[dict, dict]:
    for encode in name_to_encode.values():  # warm-up
        encode(texts[:64])
    rates: dict[str, list[float]] = {name: [] for name in name_to_encode}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, encode in name_to_encode.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(encode(texts))
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}, vectors


def report(title: str, texts: list[str], reference: Embedder, name_to_encode: dict, args, peak: float) -> None:
    tokens = sum(len(ids) for ids in reference.backbone.tokenizer(texts, truncation=True, max_length=reference.max_seq_length)["input_ids"])
    mean_tokens = tokens / len(texts)
    rates, vectors = measure(name_to_encode, texts, args.repeats)
    baseline = next(rate for name, rate in rates.items() if name.startswith("ST") and name.endswith("default"))
    exact = vectors.get("gpte torch")
    per_token = flops_per_token(reference, mean_tokens)
    print(f"\n{title}: {len(texts)} texts, {mean_tokens:.1f} tokens on average, batch {args.batch_size}, {args.threads} threads")
    print(f"  {'runner':<30} {'texts/s':>9} {'tokens/s':>10} {'vs ST':>7} {'max diff':>9} {'of peak FLOP/s':>15}")
    for name, rate in rates.items():
        diff = np.abs(vectors[name] - exact).max() if exact is not None and vectors[name].shape == exact.shape else float("nan")
        fraction = "" if "static" in name else f"{rate * mean_tokens * per_token / peak:14.1%}"
        print(f"  {name:<30} {rate:9.1f} {rate * mean_tokens:10.0f} {rate / baseline:6.2f}x {diff:9.1e} {fraction:>15}")


def stream_peak_rss(folder: str) -> None:
    """Stream 1M short texts through a static model into a .npy in a child process; print its peak RSS."""
    code = f"""
import resource, sys, tempfile, time
from pathlib import Path
from gpte import Embedder
from gpte.models.static import distill_static
from gpte.runtime.streaming import encode_to
static = distill_static(Embedder.load({folder!r}, device='cpu'), pca_dims=256, show_progress=False)
texts = [f"sentence number {{i}} about topic {{i % 977}}" for i in range(1_000_000)]
out = Path(tempfile.mkdtemp()) / "v.npy"
start = time.perf_counter()
report = encode_to(static, texts, out, show_progress=False)
print(f"{{report.n_texts}} texts in {{time.perf_counter() - start:.1f}} s; peak RSS {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}} MiB")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(f"\nstreaming 1M short texts (static backend, .npy): {result.stdout.strip() or result.stderr[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--backends", nargs="+", default=["torch", "bf16", "onnx", "onnx-int8", "static"])
    parser.add_argument("--no-long", action="store_true", help="skip the Cranfield documents")
    parser.add_argument("--stream", action="store_true", help="also stream 1M texts and print the peak RSS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = str(args.model or resolve_model(None).folder)
    with tempfile.TemporaryDirectory() as scratch:  # ONNX exports of a read-only model folder go here
        import shutil

        local = shutil.copytree(folder, Path(scratch) / "model")
        name_to_encode = runners(str(local), args)
        reference = Embedder.load(str(local), device=args.device)
        peak = matmul_flops(args.device)
        print(f"{folder} on {args.device}; measured float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
        report("short: STS Benchmark en test sentences", stsb_sentences(args.data), reference, name_to_encode, args, peak)
        if not args.no_long and LONG.exists():
            report("long: Cranfield documents", cranfield_documents(LONG), reference, name_to_encode, args, peak)
    if args.stream:
        stream_peak_rss(folder)


if __name__ == "__main__":
    main()
