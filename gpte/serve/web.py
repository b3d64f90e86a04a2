"""The web page of ``gpte serve``: a search playground over the served indexes, a results board over ``gpte evaluate``
result folders and an embedding map from ``gpte analyze``'s ``projection.json`` — plain HTML, JS and SVG shipped in
``gpte/serve/static`` (no build step), and the JSON it reads.

    GET /                      the page (public: it holds no data)
    GET /ui/static/{file}      its script and style sheet (public)
    GET /ui/indexes            {NAME: {"modes": [...], "default_mode": MODE}} the search modes each served index runs
    GET /ui/results            the results board: {"columns": [LABEL], "tasks": [{"task", "task_type", "main_score",
                               "scores": {LABEL: value | null}}], "averages": {LABEL: {TYPE | "overall": mean}}}
                               (``gpte.evaluate.report.collect`` and ``type_averages``, read at each request)
    GET /ui/maps               {"maps": [NAME]}
    GET /ui/maps/{name}        that map's projection.json: {"model", "method", "points": [{"x", "y", "text", "label"}]}

The page searches through the app's own POST /search (and POST /rerank for its rerank toggle: the hits' texts
rescored by the chosen reranker), so what it shows is what those endpoints answer. With an API key the data routes
(/ui/indexes, /ui/results, /ui/maps, and the app's own routes) need ``Authorization: Bearer KEY`` like every route;
the page and its static files are public (``PUBLIC_PATHS``, which the app's key check must let through) so that a
browser can load them and ask for the key, which it keeps in sessionStorage and sends on each of its requests.
Errors: 404 for an unknown map (the served ones named) and for the results board when no results folder is served;
409 when a results folder holds two results of one model on one task (``collect`` names them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from gpte.evaluate.report import collect, type_averages

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}  # the only files served: no path from a client
PAGE_PATH = "/"
PUBLIC_PATHS = frozenset({PAGE_PATH, *(f"/ui/static/{name}" for name in STATIC_FILES)})
PROJECTION_FILE = "projection.json"  # what ``gpte analyze`` writes in its output folder


def web_router(
    results_folders: list[Path] | None = None,
    maps: Mapping[str, Path] | None = None,
    indexes: Mapping[str, Any] | None = None,
) -> APIRouter:
    """The page's routes (listed in the module docstring).

    Args:
        results_folders: ``gpte evaluate`` output folders compared on the results board (read at each request, so a
            running evaluation's new results show on reload).
        maps: map name -> a ``gpte analyze`` output folder holding ``projection.json`` (or that file itself).
        indexes: the served indexes (name -> ``Index`` or ``MilvusIndex``), for the search modes each can run.

    Raises:
        FileNotFoundError: a results folder that is not a folder, or a map without its projection file.
    """
    folders = [Path(folder) for folder in results_folders or []]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"results folder {folder} does not exist; give a gpte evaluate output folder")
    projections = {name: _projection_file(name, Path(path)) for name, path in (maps or {}).items()}
    modes = {
        name: {"modes": list(index.modes), "default_mode": getattr(index, "default_mode", "dense")}
        for name, index in (indexes or {}).items()
    }
    router = APIRouter()

    @router.get(PAGE_PATH, include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/ui/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}; served: {', '.join(STATIC_FILES)}")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    @router.get("/ui/indexes")
    def index_modes() -> dict[str, Any]:
        return modes

    @router.get("/ui/results")
    def results() -> dict[str, Any]:
        if not folders:
            raise HTTPException(404, "no evaluation results are served; start gpte serve with --results DIR")
        try:
            table = collect(folders)
        except FileNotFoundError as error:
            raise HTTPException(404, str(error)) from None
        except ValueError as error:  # two results of one model on one task: which to show is the user's call
            raise HTTPException(409, str(error)) from None
        return results_board(table)

    @router.get("/ui/maps")
    def map_names() -> dict[str, list[str]]:
        return {"maps": list(projections)}

    @router.get("/ui/maps/{name}")
    def projection(name: str) -> dict[str, Any]:
        if name not in projections:
            raise HTTPException(404, f"map {name!r} is not served; served maps: {', '.join(projections) or 'none'}")
        return read_projection(projections[name])

    return router


def results_board(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """``collect``'s table (column label -> task -> result) as the board's JSON: one row per task (its type, main
    score name and each column's main score value, null where a column lacks the task) and each column's
    ``type_averages``."""
    columns = list(table)
    tasks = sorted({task for results in table.values() for task in results})
    rows = []
    for task in tasks:
        first = next(results[task] for results in table.values() if task in results)
        scores = {label: table[label][task]["main_score_value"] if task in table[label] else None for label in columns}
        rows.append(
            {"task": task, "task_type": first["task_type"], "main_score": first["main_score"], "scores": scores}
        )
    return {"columns": columns, "tasks": rows, "averages": {label: type_averages(table[label]) for label in columns}}


def read_projection(path: Path) -> dict[str, Any]:
    """The projection file at ``path``: ``{"model", "method", "points": [{"x", "y", "text", "label"}]}``.

    Raises:
        ValueError: the file is not such an object (its path and the expected shape named).
    """
    projection = json.loads(Path(path).read_text(encoding="utf-8"))
    points = projection.get("points") if isinstance(projection, dict) else None
    if not isinstance(points, list) or not all(isinstance(p, dict) and {"x", "y"} <= set(p) for p in points):
        raise ValueError(f"{path} is not a projection: expected {{'model', 'method', 'points': [{{'x', 'y', ...}}]}}")
    return projection


def _projection_file(name: str, path: Path) -> Path:
    """The projection file of map ``name``: ``path`` itself or ``path/projection.json``."""
    file = path / PROJECTION_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"map {name!r}: no {PROJECTION_FILE} at {path}; give a gpte analyze output folder")
    return file
