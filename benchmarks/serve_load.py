"""Load test of ``gpte serve`` on loopback: many concurrent clients for a fixed time, each sending one request
after the other; prints failures, latency percentiles and throughput.

The server is started here as its own process (``python -m gpte.cli serve``, default model
all-MiniLM-L6-v2, plus an index of Cranfield built on the fly with ``--search``); clients are asyncio tasks
in one process, each with its own httpx connection. Requests: ``POST /v1/embeddings`` with
``--inputs`` STS-B sentences each (OpenAI format), or ``POST /search`` with a Cranfield query.

    python benchmarks/serve_load.py [--clients 200] [--seconds 30] [--inputs 1] [--search] [--port 8765]

Not a test: run it by hand and record the figures in the README. Client and server share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sentences() -> list[str]:
    rows = [json.loads(line) for line in (SHARED / "sts/stsb-en/test.jsonl").open(encoding="utf-8")]
    return list(dict.fromkeys(r["sentence1"] for r in rows))


def cranfield_queries() -> list[str]:
    return [json.loads(line)["text"] for line in (SHARED / "retrieval/cranfield/queries.jsonl").open(encoding="utf-8")]


def start_server(port: int, index_root: Path | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "gpte.cli", "serve", "--port", str(port)]
    if index_root is not None:
        command += ["--index", "cranfield", "--root", str(index_root)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read()[-2000:]}")
    server.kill()
    raise RuntimeError("the server did not answer /health within 180 s")


async def client(port: int, make_request, stop_at: float, latencies: list[float], failures: list[str]) -> None:
    """One client: its own connection (one httpx client each; a shared pool of hundreds of connections costs
    httpx more CPU than the server spends), requests one after the other until ``stop_at``."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        await _requests(http, make_request, stop_at, latencies, failures)


async def _requests(
    http: httpx.AsyncClient, make_request, stop_at: float, latencies: list[float], failures: list[str]
) -> None:
    while time.monotonic() < stop_at:
        path, body = make_request()
        started = time.perf_counter()
        try:
            response = await http.post(path, json=body)
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
        except httpx.HTTPError as error:
            failures.append(f"{type(error).__name__}: {error}")
            continue
        latencies.append(time.perf_counter() - started)


async def run_load(port: int, clients: int, seconds: float, make_request) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    failures: list[str] = []
    started = time.monotonic()
    await asyncio.gather(*(client(port, make_request, started + seconds, latencies, failures) for _ in range(clients)))
    elapsed = time.monotonic() - started
    return latencies, failures, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--inputs", type=int, default=1, help="sentences per embeddings request")
    parser.add_argument(
        "--search", action="store_true", help="POST /search on a Cranfield index instead of /v1/embeddings"
    )
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        index_root = None
        if args.search:
            index_root = Path(folder)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gpte.cli",
                    "index",
                    str(SHARED / "retrieval/cranfield/corpus.jsonl"),
                    "--name",
                    "cranfield",
                    "--root",
                    folder,
                    "--chunk-tokens",
                    "0",
                    "--no-progress",
                ],
                check=True,
                env={**os.environ},
            )
            queries = cranfield_queries()

            def make_request():
                return "/search", {"query": rng.choice(queries), "index": "cranfield", "k": 10}
        else:
            texts = sentences()

            def make_request():
                return "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": rng.sample(texts, args.inputs)}

        server = start_server(args.port, index_root)
        try:
            asyncio.run(run_load(args.port, 4, 3, make_request))  # warm-up
            latencies, failures, elapsed = asyncio.run(run_load(args.port, args.clients, args.seconds, make_request))
            metrics = httpx.get(f"http://127.0.0.1:{args.port}/metrics").text
        finally:
            server.terminate()
            server.wait(timeout=30)
    ms = np.array(latencies) * 1000
    what = (
        "/search (Cranfield, k 10)" if args.search else f"/v1/embeddings ({args.inputs} input{'s' * (args.inputs > 1)})"
    )
    print(f"{what}: {args.clients} clients for {elapsed:.1f} s on loopback")
    print(
        f"  requests ok {len(latencies):,}, failed {len(failures):,}" + (f" (first: {failures[0]})" if failures else "")
    )
    if len(ms):
        print(
            f"  latency ms: p50 {np.percentile(ms, 50):.1f}, p90 {np.percentile(ms, 90):.1f}, p99 {np.percentile(ms, 99):.1f}, max {ms.max():.1f}"
        )
        print(
            f"  throughput: {len(ms) / elapsed:.1f} requests/s, {len(ms) * (1 if args.search else args.inputs) / elapsed:.1f} texts/s"
        )
    counted = [
        line for line in metrics.splitlines() if line.startswith(("gpte_requests_total", "gpte_embedded_texts_total"))
    ]
    print("  server /metrics: " + "; ".join(counted))


if __name__ == "__main__":
    main()
