"""Jobs that write jsonl records in chunks of inputs, resume after an interruption and publish their result
atomically (``gpte mine``, ``gpte synth``).

While a job runs, its work lives in a progress folder beside the output (``.NAME.progress``): a
``job.json`` naming the inputs and settings, and one ``NNNNNN.jsonl`` per finished chunk, each written
under a temporary name and renamed when complete. A restart with the same inputs and settings skips the
finished chunks; with others it is refused (``restart=True`` starts over). ``finish`` writes the final
jsonl through ``gpte.atomic`` and removes the progress folder, so nothing half-written ever has the final
name.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gpte.atomic import atomic_path, check_destination

JOB_FILE = "job.json"


class ResumableJsonl:
    """The progress folder of one job writing ``output``.

    Args:
        output: the final jsonl file.
        job: what identifies the work (input fingerprints and settings; JSON-serializable).
        overwrite: replace an existing ``output`` (else FileExistsError before any work).
        restart: discard the progress of an earlier run instead of resuming it.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        FileNotFoundError, NotADirectoryError, IsADirectoryError: ``output``'s folder is missing or a file, or
            ``output`` is a folder (``gpte.atomic.check_destination``).
        ValueError: progress of a run with other inputs or settings exists (and ``restart`` is False).
    """

    def __init__(self, output: str | Path, job: dict[str, Any], overwrite: bool = False, restart: bool = False) -> None:
        self.output = check_destination(output, overwrite)
        self.overwrite = overwrite
        self.folder = self.output.with_name(f".{self.output.name}.progress")
        self.job = json.loads(json.dumps(job))  # as it reads back from disk
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
        self._start_or_resume()

    def _start_or_resume(self) -> None:
        job_file = self.folder / JOB_FILE
        if job_file.is_file():
            earlier = json.loads(job_file.read_text(encoding="utf-8"))
            if earlier != self.job:
                changed = sorted(key for key in {*earlier, *self.job} if earlier.get(key) != self.job.get(key))
                raise ValueError(
                    f"{self.folder} holds the progress of a run with other {', '.join(changed)}; "
                    "run with the same ones to resume, or restart (CLI: --restart) to start over"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write_json(JOB_FILE, self.job)

    def done(self, chunk: int) -> bool:
        """Whether ``chunk`` finished in this or an earlier run."""
        return self._chunk_path(chunk).is_file()

    @property
    def finished_chunks(self) -> list[int]:
        return sorted(int(path.stem) for path in self.folder.glob("[0-9]*.jsonl"))

    def write_chunk(self, chunk: int, records: Iterable[dict[str, Any]]) -> None:
        """Write the records of ``chunk`` (replacing nothing: a finished chunk is never rewritten)."""
        with atomic_path(self._chunk_path(chunk)) as temporary:
            _write_jsonl(temporary, records)

    def records(self) -> Iterator[dict[str, Any]]:
        """The records of every finished chunk, in chunk order."""
        for chunk in self.finished_chunks:
            with self._chunk_path(chunk).open(encoding="utf-8") as handle:
                yield from (json.loads(line) for line in handle)

    def write_json(self, name: str, value: Any) -> None:
        """Keep a JSON side result (an intermediate step's output) in the progress folder, atomically."""
        with atomic_path(self.folder / name, overwrite=True) as temporary:
            temporary.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")

    def read_json(self, name: str) -> Any | None:
        """A side result written by ``write_json`` in this or an earlier run, or None."""
        path = self.folder / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def finish(self, records: Iterable[dict[str, Any]]) -> int:
        """Publish ``records`` as the output (atomically) and remove the progress folder; returns the count."""
        with atomic_path(self.output, overwrite=self.overwrite) as temporary:
            count = _write_jsonl(temporary, records)
        shutil.rmtree(self.folder)
        return count

    def _chunk_path(self, chunk: int) -> Path:
        return self.folder / f"{chunk:06d}.jsonl"


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
