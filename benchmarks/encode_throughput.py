"""Encode throughput: every gpte backend against sentence-transformers, same model, data, batch size and
threads, in one run.

Data: the distinct STS Benchmark en test sentences (short) and the Cranfield documents (long), from
../shared/data. For each runner: sentences/s and tokens/s (median over ``--repeats`` interleaved rounds
after a warm-up), the ratio to sentence-transformers' default backend, the largest difference from
gpte's float32 vectors, and the fraction of the machine's measured matmul peak that the model's FLOPs per
token reach (float32 peak: a torch 2048x2048 product; int8 runners: an ONNX Runtime MatMulInteger of that
size). Each section also prints the tokens the transformer runs, padding
included, for gpte's batches (sorted by token count) and sentence-transformers' (sorted by characters):
their ratio bounds what an exact float32 path can gain from batching alone.

sentence-transformers' own ONNX backends need optimum-onnx, which requires transformers < 4.58 while gpte
needs transformers 5: ``--st-python PYTHON`` names a second Python that has them
(``pip install torch==2.13.0 sentence-transformers==5.7.0 'optimum-onnx[onnxruntime]'``); its runners
(``st_backends.py``) run in that Python within this run, and their "vs ST" is against the default
backend timed in that same Python. ``--stream`` also streams 1M short texts to a file through the static
backend in a child process and prints its peak RSS.

    python benchmarks/encode_throughput.py [--device cpu|cuda] [--batch-size 32] [--threads N] [--repeats 3]
                                           [--model FOLDER] [--data STS_JSONL] [--backends torch onnx ...]
                                           [--no-long] [--long-limit N] [--st-python PYTHON] [--stream]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from interleaved_timing import measure

from gpte import Embedder
from gpte.errors import BackendUnavailableError
from gpte.models.batching import length_sorted_batches
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


def int8_matmul_ops() -> float | None:
    """Measured int8 OP/s of a large ONNX Runtime MatMulInteger (uint8 x int8, the kernel dynamic int8 models
    run), or None without onnxruntime."""
    try:
        import onnxruntime
        from onnx import TensorProto, helper
    except ImportError:
        return None
    n = 2048
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])],
        "matmul",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])],
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        helper.make_model(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    session.run(None, feeds)
    repeats = 10
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feeds)
    return repeats * 2 * n**3 / (time.perf_counter() - start)


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
        found[f"gpte {backend}"] = lambda texts, m=model: m.encode(
            texts, batch_size=args.batch_size, show_progress=False
        )
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import __version__ as st_version

    default = SentenceTransformer(folder, device=args.device)
    found[f"ST {st_version} default"] = lambda texts: default.encode(texts, batch_size=args.batch_size)
    return found


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    """Tokens the transformer runs on ``batches`` (index arrays into ``lengths``): each is padded to its longest text."""
    return int(sum(lengths[batch].max() * len(batch) for batch in batches))


def second_python_runners(
    python: str, folder: str, texts: list[str], args: argparse.Namespace, scratch: Path
) -> tuple[dict, dict]:
    """Rates and vectors of sentence-transformers' backends timed by ``st_backends.py`` in ``python``."""
    copy = scratch / "st-model"
    if not copy.exists():
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("gpte-onnx"))
    texts_file, out = scratch / "texts.json", scratch / "st.npz"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    command = [
        python,
        str(Path(__file__).with_name("st_backends.py")),
        str(copy),
        str(texts_file),
        str(out),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # a failure is reported, not raised
    if result.returncode != 0:
        print(f"  (sentence-transformers' ONNX backends in {python}: failed: {result.stderr.strip()[-300:]})")
        return {}, {}
    saved = np.load(out)
    names = [f"{name} (2nd Python)" for name in saved["names"]]
    return dict(zip(names, saved["rates"])), {name: saved[f"vectors_{i}"] for i, name in enumerate(names)}


def report(
    title: str,
    texts: list[str],
    reference: Embedder,
    name_to_encode: dict,
    args,
    peaks: dict,
    scratch: Path,
    folder: Path,
) -> None:
    """Time every runner on ``texts`` and print the table; ``peaks`` holds the measured float32 (and int8) matmul
    rates: an int8 runner's fraction is of the int8 peak."""
    lengths = np.array(
        [
            len(ids)
            for ids in reference.backbone.tokenizer(texts, truncation=True, max_length=reference.max_seq_length)[
                "input_ids"
            ]
        ]
    )
    mean_tokens = lengths.mean()
    rates, vectors = measure(name_to_encode, texts, args.repeats)
    baseline = next(rate for name, rate in rates.items() if name.startswith("ST") and name.endswith("default"))
    ratios = {name: rate / baseline for name, rate in rates.items()}
    if args.st_python:
        more_rates, more_vectors = second_python_runners(args.st_python, str(folder), texts, args, scratch)
        child_baseline = next((rate for name, rate in more_rates.items() if "default" in name), None)
        rates |= more_rates
        vectors |= more_vectors
        ratios |= {name: rate / child_baseline for name, rate in more_rates.items()}
    exact = vectors.get("gpte torch")
    per_token = flops_per_token(reference, mean_tokens)
    gpte_work = padded_tokens(lengths, length_sorted_batches(lengths, args.batch_size))  # gpte's own batch plan
    st_work = padded_tokens(
        lengths, length_sorted_batches([len(text) for text in texts], args.batch_size)
    )  # by characters
    print(
        f"\n{title}: {len(texts)} texts, {mean_tokens:.1f} tokens on average, batch {args.batch_size}, {args.threads} threads"
    )
    print(
        f"  tokens run, padding included: gpte {gpte_work} ({gpte_work / lengths.sum() - 1:+.1%} over the {lengths.sum()} real ones), "
        f"sentence-transformers {st_work} ({st_work / lengths.sum() - 1:+.1%}); ratio {st_work / gpte_work:.2f}"
    )
    print(f"  {'runner':<34} {'texts/s':>9} {'tokens/s':>10} {'vs ST':>7} {'max diff':>9} {'of peak OP/s':>13}")
    for name, rate in rates.items():
        diff = (
            np.abs(vectors[name] - exact).max()
            if exact is not None and vectors[name].shape == exact.shape
            else float("nan")
        )
        peak = peaks.get("int8") if "int8" in name else peaks["float32"]
        fraction = "" if "static" in name or peak is None else f"{rate * mean_tokens * per_token / peak:12.1%}"
        print(f"  {name:<34} {rate:9.1f} {rate * mean_tokens:10.0f} {ratios[name]:6.2f}x {diff:9.1e} {fraction:>13}")


def stream_peak_rss(folder: str) -> None:
    """Stream 1M short texts through a static model into a .npy in a child process; print its peak RSS.

    The peak is the child's VmHWM (Linux): getrusage's ru_maxrss survives fork and exec, so it would report
    this parent's peak (all benchmark models loaded) when that is larger.
    """
    code = f"""
import sys, tempfile, time
from pathlib import Path
from gpte import Embedder
from gpte.models.static import distill_static
from gpte.runtime.streaming import encode_to
static = distill_static(Embedder.load({folder!r}, device='cpu'), pca_dims=256, show_progress=False)
texts = [f"sentence number {{i}} about topic {{i % 977}}" for i in range(1_000_000)]
out = Path(tempfile.mkdtemp()) / "v.npy"
start = time.perf_counter()
report = encode_to(static, texts, out, show_progress=False)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(f"{{report.n_texts}} texts in {{time.perf_counter() - start:.1f}} s; peak RSS {{peak / 1024:.0f}} MiB")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
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
    parser.add_argument("--long-limit", type=int, default=None, help="time only the first N Cranfield documents")
    parser.add_argument(
        "--st-python", default=None, help="a Python with sentence-transformers' ONNX backends (see above)"
    )
    parser.add_argument("--stream", action="store_true", help="also stream 1M texts and print the peak RSS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*were truncated")  # Cranfield: a third of the documents pass 256 tokens
    folder = str(args.model or resolve_model(None).folder)
    with tempfile.TemporaryDirectory() as scratch:  # ONNX exports of a read-only model folder go here
        local = shutil.copytree(folder, Path(scratch) / "model")
        name_to_encode = runners(str(local), args)
        reference = Embedder.load(str(local), device=args.device)
        peaks = {"float32": matmul_flops(args.device), "int8": int8_matmul_ops() if args.device == "cpu" else None}
        int8_peak = f"; int8 (ONNX Runtime MatMulInteger) {peaks['int8'] / 1e9:.1f} GOP/s" if peaks["int8"] else ""
        print(
            f"{folder} on {args.device}; measured matmul peak: float32 {peaks['float32'] / 1e9:.1f} GFLOP/s{int8_peak}"
        )
        report(
            "short: STS Benchmark en test sentences",
            stsb_sentences(args.data),
            reference,
            name_to_encode,
            args,
            peaks,
            Path(scratch),
            local,
        )
        if not args.no_long and LONG.exists():
            documents = cranfield_documents(LONG)[: args.long_limit]
            report("long: Cranfield documents", documents, reference, name_to_encode, args, peaks, Path(scratch), local)
    if args.stream:
        stream_peak_rss(folder)


if __name__ == "__main__":
    main()
