"""sentence-transformers' own backends (default PyTorch, ONNX, ONNX O3-optimized, ONNX int8), timed in the
Python that has them; run by ``encode_throughput.py --st-python PYTHON``, not by hand.

Why a second Python: sentence-transformers' ONNX backends need optimum-onnx, which requires
transformers < 4.58, while gpte needs transformers 5. This script imports neither gpte nor the first
Python's packages: it reads the texts, times each backend (median of ``repeats`` interleaved rounds after
a warm-up: ``interleaved_timing``, the parent's protocol), and writes the rates and vectors to an .npz file.

    PYTHON benchmarks/st_backends.py MODEL_FOLDER TEXTS_JSON OUT_NPZ --batch-size 32 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from interleaved_timing import measure


def backends(folder: str) -> dict:
    """name -> SentenceTransformer, exporting the ONNX files into ``folder/onnx`` as sentence-transformers does."""
    from sentence_transformers import (
        SentenceTransformer,
        __version__,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    onnx = SentenceTransformer(folder, device="cpu", backend="onnx")
    export_optimized_onnx_model(onnx, "O3", folder)
    export_dynamic_quantized_onnx_model(onnx, "avx2", folder)
    return {
        f"ST {__version__} default": SentenceTransformer(folder, device="cpu"),
        f"ST {__version__} onnx": onnx,
        f"ST {__version__} onnx O3": SentenceTransformer(
            folder, device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"}
        ),
        f"ST {__version__} onnx int8": SentenceTransformer(
            folder, device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_quint8_avx2.onnx"}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("texts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    name_to_encode = {
        name: lambda batch, model=model: model.encode(batch, batch_size=args.batch_size)
        for name, model in backends(args.model).items()
    }
    rates, vectors = measure(name_to_encode, texts, args.repeats)
    np.savez(
        args.out,
        names=np.array(list(rates)),
        rates=np.array(list(rates.values())),
        **{f"vectors_{index}": vectors[name] for index, name in enumerate(rates)},
    )


if __name__ == "__main__":
    main()
