"""The web page of ``gpte serve`` (``gpte.serve.web``): its JSON routes on the TestClient (the results board is
``gpte.evaluate.report``'s ``collect`` and ``type_averages``, maps as written, 404s naming the served ones, the API
key on the data routes but not on the page), and the page itself in headless Chromium (Playwright driving the system
browser, served by uvicorn): the hits shown equal POST /search's (and, reranked, POST /rerank's), the board has a
column per model, the map draws every point, text shows as text, the key typed in the page is used and kept."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_serve_reliability import _serving

from gpte.evaluate.report import collect, type_averages
from gpte.evaluate.results import result_path, write_result
from gpte.models.cross_encoder import CrossEncoder
from gpte.serve.app import create_app
from gpte.serve.web import web_router

KEY = "web-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCORES = {  # model -> task -> (task type, main score value); model-b lacks one task
    "model-a": {"retrieval/x": ("Retrieval", 0.5), "retrieval/y": ("Retrieval", 0.3), "sts/z": ("STS", 0.8)},
    "model-b": {"retrieval/x": ("Retrieval", 0.6), "sts/z": ("STS", 0.7)},
}
HOSTILE = '<img src=x onerror="document.title=1"> & <b>bold</b>'
POINTS = [
    {"x": 0.0, "y": 0.0, "text": "a wing stalls", "label": "aero"},
    {"x": 1.0, "y": 0.5, "text": "lift and drag", "label": "aero"},
    {"x": -1.0, "y": 2.0, "text": "heat transfer", "label": "thermo"},
    {"x": 0.5, "y": -1.5, "text": HOSTILE, "label": None},
    {"x": 2.0, "y": 1.0, "text": "conduction", "label": "thermo"},
]


@pytest.fixture(scope="module")
def results_folders(tmp_path_factory) -> list[Path]:
    """Two ``gpte evaluate`` output folders, one model each, with results in gpte.evaluate.results' shape."""
    root = tmp_path_factory.mktemp("results")
    folders = []
    for model, tasks in SCORES.items():
        folder = root / model
        for task, (task_type, value) in tasks.items():
            result = {"task": task, "task_type": task_type, "split": "test", "language": "en", "main_score": "m"}
            result |= {"main_score_value": value, "scores": {}, "provenance": {"model": model}}
            write_result(result_path(folder, model, task), result)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> dict[str, Path]:
    """One ``gpte analyze`` output folder with its projection.json."""
    folder = tmp_path_factory.mktemp("analysis")
    (folder / "projection.json").write_text(json.dumps({"model": "tiny", "method": "pca", "points": POINTS}))
    return {"docs": folder}


def _web_app(embedder, index, results_folders, maps, api_key=None, rerankers=None):
    """The app as ``gpte serve`` builds it with the page."""
    return create_app(
        {"tiny": embedder},
        {"docs": index},
        api_key=api_key,
        rerankers=rerankers,
        results_folders=results_folders,
        maps=maps,
    )


@pytest.fixture(scope="module")
def client(embedder, index, results_folders, maps):
    with TestClient(_web_app(embedder, index, results_folders, maps, api_key=KEY)) as test_client:
        yield test_client


def test_results_board_is_report_collect_and_type_averages(client, results_folders):
    board = client.get("/ui/results", headers=AUTH).json()
    table = collect(results_folders)
    assert board["columns"] == list(table) and len(board["columns"]) == 2
    assert [row["task"] for row in board["tasks"]] == ["retrieval/x", "retrieval/y", "sts/z"]
    a, b = board["columns"]
    assert [row["scores"] for row in board["tasks"]] == [
        {a: 0.5, b: 0.6},
        {a: 0.3, b: None},
        {a: 0.8, b: 0.7},
    ]
    assert [row["task_type"] for row in board["tasks"]] == ["Retrieval", "Retrieval", "STS"]
    assert board["averages"] == {label: type_averages(results) for label, results in table.items()}
    assert board["averages"][a] == pytest.approx({"Retrieval": 0.4, "STS": 0.8, "overall": 1.6 / 3})


def test_maps_are_listed_and_served_as_written_and_unknown_is_404_naming_them(client):
    assert client.get("/ui/maps", headers=AUTH).json() == {"maps": ["docs"]}
    projection = client.get("/ui/maps/docs", headers=AUTH).json()
    assert projection == {"model": "tiny", "method": "pca", "points": POINTS}
    missing = client.get("/ui/maps/nope", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "map 'nope' is not served; served maps: docs"


def test_index_modes_are_the_index_own(client, index):
    modes = client.get("/ui/indexes", headers=AUTH).json()
    assert modes == {"docs": {"modes": list(index.modes), "default_mode": index.default_mode}}
    assert {"dense", "lexical", "hybrid"} <= set(modes["docs"]["modes"])


@pytest.mark.parametrize("path", ["/ui/indexes", "/ui/results", "/ui/maps", "/ui/maps/docs"])
def test_data_routes_need_the_key(client, path):
    refused = client.get(path)
    assert refused.status_code == 401 and "API key" in refused.json()["detail"]
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200


def test_page_and_its_static_files_are_public_and_only_those(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/static/app.js"' in page.text
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        served = client.get(f"/ui/static/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
    assert client.get("/ui/static/index.html").status_code == 401  # not a public path: the key is checked first
    other = client.get("/ui/static/web.py", headers=AUTH)
    assert other.status_code == 404 and other.json()["detail"] == "no static file 'web.py'; served: app.js, style.css"
    assert client.get("/ui/static/..%2Fweb.py", headers=AUTH).status_code == 404


def test_bad_folders_are_refused_at_start_and_no_results_is_a_404(tmp_path, embedder):
    with pytest.raises(FileNotFoundError, match="results folder .*missing does not exist"):
        web_router([tmp_path / "missing"], {})
    with pytest.raises(FileNotFoundError, match="map 'm': no projection.json at"):
        web_router([], {"m": tmp_path})
    with TestClient(create_app({"tiny": embedder})) as bare:
        answer = bare.get("/ui/results")
        assert answer.status_code == 404 and "--results DIR" in answer.json()["detail"]
        assert bare.get("/ui/maps").json() == {"maps": []}


# ------------------------------------------------------------------ the page in a real browser


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system (Debian's chromium package), driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser test")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def cross_encoder(tiny_models) -> CrossEncoder:
    return CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")


def _shown_hits(page) -> list[tuple[str, str]]:
    return list(zip(page.locator("#hits .doc-id").all_inner_texts(), page.locator("#hits .score").all_inner_texts()))


def _search_in_page(page, query: str, mode: str, k: int, rerank: bool) -> None:
    page.fill("#search-query", query)
    page.select_option("#search-mode", mode)
    page.fill("#search-k", str(k))
    page.set_checked("#search-rerank", rerank)
    page.evaluate("document.querySelector('#hits').replaceChildren()")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#hits li")


def test_page_shows_what_the_api_answers(browser, embedder, index, cross_encoder, results_folders, maps, tmp_path):
    from playwright.sync_api import expect

    app = _web_app(embedder, index, results_folders, maps, api_key=KEY, rerankers={"ce": cross_encoder})
    with _serving(app) as url:
        for path in ("/ui/indexes", "/ui/results", "/ui/maps", "/ui/maps/docs", "/search"):
            assert httpx.request("POST" if path == "/search" else "GET", url + path).status_code == 401
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(f"{url}/#search")
        expect(page.locator("#status")).to_contain_text("type the server's API key")
        page.fill("#api-key", KEY)
        page.click("#key-form button")
        expect(page.locator("#search-mode")).to_have_value(index.default_mode)

        # 1. search: the hits shown are POST /search's, in order, scores to the 4 decimals shown
        query = "heat transfer at high angles"
        _search_in_page(page, query, "hybrid", 5, rerank=False)
        body = {"query": query, "index": "docs", "k": 5, "mode": "hybrid"}
        hits = httpx.post(url + "/search", json=body, headers=AUTH).json()["hits"]
        assert len(hits) == 2
        assert _shown_hits(page) == [(hit["doc_id"], f"{hit['score']:.4f}") for hit in hits]
        marks = {text.lower() for text in page.locator("#hits mark").all_inner_texts()}
        assert marks == {"heat", "transfer", "at", "high", "angles"}  # each in one of the two texts
        page.screenshot(path=tmp_path / "search.png", full_page=True)

        # ... reranked: POST /search's candidates in POST /rerank's order and scores
        _search_in_page(page, query, "dense", 1, rerank=True)
        candidates = httpx.post(url + "/search", json={**body, "k": 50, "mode": "dense"}, headers=AUTH).json()["hits"]
        texts = [hit["text"] for hit in candidates]
        ranking = httpx.post(
            url + "/rerank", json={"query": query, "texts": texts, "model": "ce", "truncate": True}, headers=AUTH
        ).json()
        assert _shown_hits(page) == [(candidates[ranking[0]["index"]]["doc_id"], f"{ranking[0]['score']:.4f}")]
        assert len(ranking) == 2 and ranking[0]["score"] != ranking[1]["score"]

        # 2. the results board: a column per model, the scores x 100, sortable; a bar per model and type
        page.click(".tab[data-tab=results]")
        expect(page.locator("#board thead th.model")).to_have_count(2)
        board = httpx.get(url + "/ui/results", headers=AUTH).json()
        assert page.locator("#board thead th.model").all_inner_texts() == board["columns"]
        assert page.locator("#board tbody tr").count() == 3
        assert page.locator("#board tfoot tr").all_inner_texts()[-1].split("\t") == [
            "mean over tasks",
            *(f"{100 * board['averages'][column]['overall']:.2f}" for column in board["columns"]),
        ]
        page.click(f"#board thead th[data-column='{board['columns'][1]}']")  # by model-b, best first, missing last
        assert page.locator("#board tbody tr td:first-child").all_inner_texts() == [
            "sts/z",
            "retrieval/x",
            "retrieval/y",
        ]
        assert page.locator("#chart rect.bar").count() == 2 * 3  # Retrieval, STS, overall
        page.screenshot(path=tmp_path / "results.png", full_page=True)

        # 3. the map: every point drawn, coloured by label, the hovered text shown as text
        page.click(".tab[data-tab=map]")
        expect(page.locator("#scatter circle.point")).to_have_count(len(POINTS))
        assert page.locator("#legend li").count() == 3  # aero, thermo, no label
        fills = page.locator("#scatter circle.point").evaluate_all("nodes => nodes.map(n => n.getAttribute('fill'))")
        assert fills[0] == fills[1] != fills[2] == fills[4] != fills[3]
        page.hover("#scatter circle[data-index='3']")
        expect(page.locator("#tooltip p")).to_have_text(HOSTILE)
        assert page.locator("#tooltip img, #tooltip b").count() == 0 and page.title() == "gpte"
        page.screenshot(path=tmp_path / "map.png", full_page=True)

        # the key is kept for the tab: a reload works without typing it again
        page.reload()
        expect(page.locator("#scatter circle.point")).to_have_count(len(POINTS))
        page.close()
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("search.png", "results.png", "map.png"))
