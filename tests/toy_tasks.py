"""Two toy MTEB-style task folders (STS and Retrieval) written by tests that evaluate end to end."""

import json

ROWS = [
    {"sentence1": "a cat sits on the mat", "sentence2": "a dog lies on the rug", "score": 3.0},
    {"sentence1": "tea is hot", "sentence2": "people eat bread", "score": 1.0},
    {"sentence1": "a banana is yellow", "sentence2": "an apple is red", "score": 2.0},
    {"sentence1": "the train leaves at noon", "sentence2": "the train departs at midday", "score": 4.8},
    {"sentence1": "he plays the guitar", "sentence2": "she slices an onion", "score": 0.2},
    {"sentence1": "rain floods the streets", "sentence2": "the storm brought heavy rain", "score": 3.9},
]
DOCS = {
    "d1": "The cat sleeps on the warm mat.",
    "d2": "Heavy rain floods the streets.",
    "d3": "Bake the bread for forty minutes.",
    "d4": "The train leaves at noon.",
    "d5": "He plays the guitar every night.",
    "d6": "The moon is full tonight.",
}
QUERIES = {"q1": "what do cats do", "q2": "will it rain", "q3": "how to bake bread", "q4": "when does the train leave"}
QRELS = {"q1": "d1", "q2": "d2", "q3": "d3", "q4": "d4"}


def toy_sts_task(folder, rows=ROWS, **meta):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": "STS", "score_range": [0, 5], **meta}))
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def toy_retrieval_task(folder, queries=QUERIES, docs=DOCS):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": "Retrieval"}))
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    qrels = "".join(f"{query}\t{QRELS[query]}\t1\n" for query in queries)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder
