"""Load test of ``gpte serve`` on loopback: many concurrent clients for a fixed time, each sending one request
after the other; prints failures, latency percentiles and throughput.

The server is started here as its own process (``python -m gpte.cli serve``, default model
all-MiniLM-L6-v2, plus an index of Cranfield built on the fly with ``--search``); clients are asyncio tasks
in one process, each with its own httpx connection. Requests: ``POST /v1/embeddings`` with
``--inputs`` STS-B sentences each (OpenAI format), or ``POST /search`` with a Cranfield query.

    python benchmarks/serve_load.py [--clients 200] [--seconds 30] [--inputs 1] [--search] [--port 8765]
    python benchmarks/serve_load.py --soak [--clients 200] [--seconds 60] [--poisoned 0.01]

``--soak``: the reliability soak. Clients mix /v1/embeddings (one sentence) and hybrid /search; a ``--poisoned``
share of requests carries a lone surrogate (no UTF-8 form) and must get 400 alone; during the load, ``gpte index``
updates the served index (the last 100 Cranfield documents added; it starts ``--update-at`` seconds in and, under
the load, takes tens of seconds to go live). Printed: failures among valid requests, the
largest difference of a served vector from the same sentence embedded alone, the poisoned requests' statuses, the
generations searches saw, and the server's RSS before and after.

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
from interleaved_timing import cpu_description

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


POISONED_EMBEDDING = '{"model": "all-MiniLM-L6-v2", "input": "bad \\ud800 text"}'
POISONED_SEARCH = '{"query": "bad \\ud800 query", "index": "cranfield", "mode": "hybrid"}'


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_cranfield_index(root: str, corpus: Path) -> None:
    command = [sys.executable, "-m", "gpte.cli", "index", str(corpus), "--name", "cranfield", "--root", root]
    subprocess.run(command + ["--chunk-tokens", "0", "--no-progress"], check=True, stdout=subprocess.DEVNULL)


async def soak_client(port: int, stop_at: float, share: float, rng: random.Random, texts, queries, seen) -> None:
    """One soak client: requests one after the other until ``stop_at``; a ``share`` of them poisoned. ``seen``
    collects (kind, status, payload) per request."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        while time.monotonic() < stop_at:
            search = rng.random() < 0.5
            if rng.random() < share:
                content = POISONED_SEARCH if search else POISONED_EMBEDDING
                headers = {"content-type": "application/json"}
                try:
                    response = await http.post(
                        "/search" if search else "/v1/embeddings", content=content, headers=headers
                    )
                    seen.append(("poisoned", response.status_code, None))
                except httpx.HTTPError as error:
                    seen.append(("poisoned", type(error).__name__, None))
                continue
            try:
                if search:
                    body = {"query": rng.choice(queries), "index": "cranfield", "k": 5, "mode": "hybrid"}
                    response = await http.post("/search", json=body)
                    payload = (
                        [hit["doc_id"] for hit in response.json()["hits"]] if response.status_code == 200 else None
                    )
                    seen.append(("search", response.status_code, payload))
                else:
                    text = rng.choice(texts)
                    response = await http.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": [text]})
                    ok = response.status_code == 200
                    seen.append(
                        (
                            "embed",
                            response.status_code,
                            (text, response.json()["data"][0]["embedding"]) if ok else response.text[:200],
                        )
                    )
            except httpx.HTTPError as error:
                seen.append(("search" if search else "embed", type(error).__name__, None))


def soak(args: argparse.Namespace) -> None:
    """The reliability soak (see the module docstring)."""
    from gpte import Embedder

    texts, queries = sentences()[:500], cranfield_queries()
    corpus = [json.loads(line) for line in (SHARED / "retrieval/cranfield/corpus.jsonl").open(encoding="utf-8")]
    reference = Embedder.load(None, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "cranfield.jsonl"  # one path: the update changes documents, not their source
        source.write_text("".join(json.dumps(row) + "\n" for row in corpus[:-100]), encoding="utf-8")
        build_cranfield_index(folder, source)
        server = start_server(args.port, Path(folder))
        try:
            rss_before = rss_mib(server.pid)
            seen: list = []
            rss_series: list[float] = []

            async def run() -> None:
                stop_at = time.monotonic() + args.seconds
                clients = [
                    soak_client(args.port, stop_at, args.poisoned, random.Random(i), texts, queries, seen)
                    for i in range(args.clients)
                ]
                if args.update_at < args.seconds:
                    clients.append(asyncio.to_thread(_update_during_load, folder, source, corpus, args.update_at))
                clients.append(_sample_rss(server.pid, stop_at, rss_series))
                await asyncio.gather(*clients)

            asyncio.run(run())
            rss_after = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    valid = [entry for entry in seen if entry[0] != "poisoned"]
    failed = [entry for entry in valid if entry[1] != 200]
    embedded = [entry[2] for entry in valid if entry[0] == "embed" and entry[1] == 200]
    alone = reference.encode(sorted({text for text, _ in embedded}))
    row = {text: i for i, text in enumerate(sorted({text for text, _ in embedded}))}
    worst = max((float(np.abs(np.array(v, np.float32) - alone[row[t]]).max()) for t, v in embedded), default=0.0)
    new_ids = {str(row_["_id"]) for row_ in corpus[-100:]}
    after_update = sum(1 for entry in valid if entry[0] == "search" and entry[2] and new_ids & set(entry[2]))
    poisoned = [entry[1] for entry in seen if entry[0] == "poisoned"]
    print(
        f"soak: {args.clients} clients for {args.seconds:.0f} s, {args.poisoned:.0%} poisoned, index update during the load"
    )
    print(f"  valid requests {len(valid):,}: failed {len(failed):,}" + (f" (first: {failed[0][:2]})" if failed else ""))
    print(f"  vectors: {len(embedded):,} checked, max |served - alone| {worst:.2e}")
    print(f"  searches that returned a document added by the update: {after_update:,}")
    print(f"  poisoned requests {len(poisoned):,}: statuses {sorted(set(map(str, poisoned)))}")
    print(f"  server RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after ({rss_after - rss_before:+.0f} MiB)")
    print(f"  server RSS every {RSS_EVERY:.0f} s (MiB): {' '.join(f'{value:.0f}' for value in rss_series)}")


RSS_EVERY = 10.0


async def _sample_rss(pid: int, stop_at: float, series: list[float]) -> None:
    """Append the server's RSS (MiB) to ``series`` every ``RSS_EVERY`` seconds until ``stop_at``: growth that levels
    off is the load's working set, growth that does not is a leak."""
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(RSS_EVERY, max(stop_at - time.monotonic(), 0)))
        series.append(rss_mib(pid))


def _update_during_load(folder: str, source: Path, corpus: list[dict], wait: float) -> None:
    """After ``wait`` seconds, add the held-back documents to ``source`` and run ``gpte index`` on it."""
    started = time.monotonic()
    time.sleep(wait)
    source.write_text("".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8")
    build_cranfield_index(folder, source)
    print(f"  (index update started at {wait:.0f} s, live at {time.monotonic() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--inputs", type=int, default=1, help="sentences per embeddings request")
    parser.add_argument(
        "--search", action="store_true", help="POST /search on a Cranfield index instead of /v1/embeddings"
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--soak", action="store_true", help="the reliability soak (embeddings, search, poison, update)")
    parser.add_argument("--poisoned", type=float, default=0.01, help="--soak: share of poisoned requests")
    parser.add_argument(
        "--update-at",
        type=float,
        default=10,
        help="--soak: seconds into the load when the index update starts (not before --seconds: no update)",
    )
    args = parser.parse_args()
    print(cpu_description())
    if args.soak:
        soak(args)
        return
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
