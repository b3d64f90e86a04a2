"""The search index that mining and synthesis filtering retrieve from: one vector per whole document
(``chunk_tokens=0``: truncated by the model, as training pairs are), exact search, built incrementally in a
folder that later runs reuse (only new or changed documents are embedded again)."""

from __future__ import annotations

from pathlib import Path

from gpte.models.protocol import DenseModel
from gpte.search.index import Index, build_index


def open_corpus_index(
    corpus: str | Path,
    folder: str | Path,
    embedder: DenseModel | None = None,
    model: str | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    show_progress: bool = True,
) -> Index:
    """Build or update the whole-document index of ``corpus`` at ``folder`` and open it.

    Args:
        corpus: a document file or folder (``gpte.data.documents``: ``_id``/``id`` and ``text``, optional
            ``title``); duplicate ids are an error that names them.
        folder: where the index lives (kept for later runs).
        embedder, model: the model (default all-MiniLM-L6-v2; an existing index: the one it was built with).
    """
    build_index(
        folder,
        corpus,
        embedder=embedder,
        model=model,
        chunk_tokens=0,
        overlap=0,
        ann=None,
        text_field=text_field,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    return Index.open(folder, embedder)


def corpus_texts(index: Index) -> dict[str, str]:
    """Document id -> full text of a corpus index (one chunk per document), sharing the index's strings
    rather than holding the corpus a second time."""
    chunks = index.snapshot.chunks
    return {doc_id: chunks.texts[first] for doc_id, (_, first, _) in index.snapshot.documents.items()}
