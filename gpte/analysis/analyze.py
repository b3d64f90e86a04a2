"""``gpte analyze``: every analysis of one model in one resumable run, gathered in a Markdown report.

Sections (``SECTIONS``), each saved to ``OUT/sections/NAME.json`` when done, so an interrupted run resumes
at the first unfinished section:

- geometry:   anisotropy, effective rank and top-direction variance of the model's vectors of a corpus;
- whitening:  Su et al.'s whitening fitted on that corpus, the geometry after it, and the task scores
              before and after (the whitened model shares the real model's weights, with the step appended);
- efficiency: task scores against Matryoshka dimension and output precision (curves as PNG);
- inversion:  a GEIA-style probe trained on one set of sentences and tested on another, against random
              vectors, and what noise, quantization and truncation take from it and cost on the tasks;
- bias:       the WEAT/SEAT association tests with shuffled controls, and the counterfactual similarity gap;
- interpret:  the explanation of one similar pair (word occlusion, nearest neighbours), and the LM-head
              tokens of decoder embedders;
- figures:    a 2-D map of a labelled set (also as ``OUT/projection.json``: ``{"model", "method": "pca", "points":
              [{"x", "y", "text", "label"}]}``, for a web page) and the similarity histogram of the pairs labelled
              similar and dissimilar.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpte.analysis import bias
from gpte.analysis.efficiency import (
    check_scored,
    matryoshka_curve,
    matryoshka_dimensions,
    precision_curve,
    score_transforms,
)
from gpte.analysis.geometry import describe
from gpte.analysis.interpret import explain_similarity, lm_head_tokens
from gpte.analysis.inversion import InversionProbe, InversionScores, ProbeConfig, inversion_scores, run_probe
from gpte.analysis.plots import bars_figure, curve_figure, project_2d, projection_figure, save, similarity_histogram
from gpte.analysis.report import Section, markdown_table, write_report
from gpte.analysis.texts import labelled_texts, scored_pairs, task_texts
from gpte.analysis.views import (
    CachedEncoder,
    Transform,
    gaussian_noise,
    identity,
    precision,
    truncate,
)
from gpte.analysis.whitening import add_whitening, fit_whitening
from gpte.atomic import atomic_path, check_destination
from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import Task, discover_tasks, select_tasks
from gpte.locking import exclusive_output
from gpte.models.protocol import DenseModel
from gpte.runtime.quantization import calibrate
from gpte.similarity import pairwise_similarity

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

SECTION_FOLDER = "sections"
PROJECTION_LABELS = 10  # the most frequent labels drawn in the 2-D map
PROJECTION_POINTS = 2000
PAIR_SHARE = 0.2  # STS pairs in the top / bottom fifth of the score range count as positive / negative
PROJECTION_JSON = "projection.json"


@dataclass
class AnalysisInputs:
    """What the analyses read.

    Attributes:
        corpus: texts for geometry and for fitting whitening.
        tasks: scored tasks (whitening effect, curves, defense costs).
        labelled: (texts, labels) for the 2-D map.
        pairs: (first, second, gold, score_range) for the similarity histogram; PairClassification gold is 0/1.
        inversion_train, inversion_test: sentences the probe learns from and is tested on.
        whiten_dims: dimensions kept by whitening (None: all).
        probe: the inversion probe's size and training.
        adaptive_probe: also train one probe per defense on the defended vectors (the attacker who sees them).
        save_whitened: a folder to save the whitened model in (None: not saved).
        labelled_source, pairs_source: where ``labelled`` and ``pairs`` come from (a task name), named in the figures.
    """

    corpus: list[str]
    tasks: list[Task] = field(default_factory=list)
    labelled: tuple[list[str], list[str]] | None = None
    pairs: tuple[list[str], list[str], list[float], tuple[float, float]] | None = None
    inversion_train: list[str] | None = None
    inversion_test: list[str] | None = None
    whiten_dims: int | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    adaptive_probe: bool = False
    save_whitened: Path | None = None
    labelled_source: str = "a labelled set"
    pairs_source: str = "the pairs"


class Analysis:
    """One model's analyses, written under ``folder``.

    Args:
        model: gpte's Embedder (whitening, interpret and LM-head readings need one).
        inputs: what the sections read.
        folder: where sections, figures and ``report.md`` go.
        batch_size: texts per forward pass.
    """

    def __init__(self, model, inputs: AnalysisInputs, folder: str | Path, batch_size: int = 32) -> None:
        self.model = model
        self.inputs = inputs
        self.folder = Path(folder)
        self.encoder = CachedEncoder(model, batch_size)
        self.key = _run_key(model, inputs)

    def run(self, sections: Sequence[str] | None = None, overwrite: bool = False) -> Path:
        """Run ``sections`` (default all) in order, reusing finished ones unless ``overwrite``; returns report.md,
        which gathers every finished section of this model and inputs in the folder, run now or before.

        Raises:
            ValueError: an unknown section name (the names listed), or a section to reuse that another model
                or other inputs made.
            FileNotFoundError, NotADirectoryError: the folder's parent is missing or a file, or the folder is a file
                (``gpte.atomic.check_destination``).
            OutputLockedError: another process is writing the folder.
        """
        names = check_sections(sections)
        check_destination(self.folder, overwrite=True, folder=True)  # an existing folder is resumed
        with exclusive_output(self.folder, "report folder"):  # a second run on the folder fails at once
            return self._run(names, overwrite)

    def _run(self, names: list[str], overwrite: bool) -> Path:
        for number, name in enumerate(names, 1):
            path = self._path(name)
            if path.exists() and not overwrite:
                self._finished(path)
                logger.info(f"[{number}/{len(names)}] {name}: kept {path}")
                continue
            logger.info(f"[{number}/{len(names)}] {name} ...")
            section = SECTIONS[name](self)
            with atomic_path(path, overwrite=True) as temporary:
                saved = {"key": self.key, "section": asdict(section)}
                temporary.write_text(json.dumps(saved, indent=1, default=float), encoding="utf-8")
        finished = [self._finished(self._path(name), strict=False) for name in SECTIONS if self._path(name).exists()]
        return write_report(self.folder, f"Embedding analysis: {self.encoder.name}", [s for s in finished if s])

    def _path(self, name: str) -> Path:
        return self.folder / SECTION_FOLDER / f"{name}.json"

    def _finished(self, path: Path, strict: bool = True) -> Section | None:
        """A section saved by an earlier run of this model on these inputs (None if another made it and not strict).

        Raises:
            ValueError: ``strict`` and it was made by another model or from other inputs.
        """
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == self.key:
            return Section(**saved["section"])
        if strict:
            raise ValueError(
                f"{path} was made by another model or from other inputs; "
                "pass overwrite=True (CLI: --overwrite) or write to another folder"
            )
        return None

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The model's vectors (its default output), each text encoded once per run."""
        return self.encoder.encode(list(texts))

    def calibration(self) -> np.ndarray:
        """int8 calibration ranges: per-dimension [min; max] of the corpus vectors."""
        return calibrate(self.vectors(self.inputs.corpus))

    def scores(self, transforms: dict[str, Transform]) -> dict[str, dict[str, float]]:
        return score_transforms(self.encoder, transforms, self.inputs.tasks) if self.inputs.tasks else {}


# ----------------------------------------------------------------- sections


def geometry_section(analysis: Analysis) -> Section:
    shape = describe(analysis.vectors(analysis.inputs.corpus))
    return Section(
        "geometry", "Geometry", _geometry_table({"model output": shape}), data={"model output": asdict(shape)}
    )


def whitening_section(analysis: Analysis) -> Section:
    model, inputs = analysis.model, analysis.inputs
    raw = model.encode(inputs.corpus, normalize=False, batch_size=analysis.encoder.batch_size)
    whitening = fit_whitening(raw, inputs.whiten_dims)
    before = analysis.scores({"model": identity}).get("model", {})
    whitened = add_whitening(model, whitening)  # a new model sharing the weights: the caller's is unchanged
    after = evaluate(whitened, inputs.tasks) if inputs.tasks else None
    if after is not None:
        check_scored("whitened", after.failures)
    after_scores = {task: result["main_score_value"] for task, result in (after.results if after else {}).items()}
    if inputs.save_whitened:
        whitened.card_notes = replace(whitened.card_notes, results=after_scores)
        whitened.save(inputs.save_whitened, overwrite=True)
    shapes = {"model output": describe(analysis.vectors(inputs.corpus)), "whitened": describe(whitening.apply(raw))}
    rows = [
        (task, 100 * before[task], 100 * after_scores[task], 100 * (after_scores[task] - before[task]))
        for task in before
    ]
    k = whitening.matrix.shape[1]
    text = (
        f"Whitening (Su et al. 2021) fitted on {len(inputs.corpus)} corpus texts, keeping {k} of {raw.shape[1]} "
        f"dimensions; applied as a linear step before normalization.\n\n{_geometry_table(shapes)}\n\n"
        + (markdown_table(["task", "main score", "whitened", "change"], rows) if rows else "No tasks scored.")
    )
    if inputs.save_whitened:
        text += f"\n\nThe whitened model is saved in `{inputs.save_whitened}`."
    data = {
        "dimensions": k,
        "geometry": {name: asdict(shape) for name, shape in shapes.items()},
        "scores": before,
        "whitened_scores": after_scores,
    }
    return Section("whitening", "Whitening", text, data=data)


def efficiency_section(analysis: Analysis) -> Section:
    if not analysis.inputs.tasks:
        return Section("efficiency", "Efficiency curves", "No tasks given, so no curves.")
    dimensions = matryoshka_dimensions(analysis.vectors(analysis.inputs.corpus[:2]).shape[1])
    by_dimension = matryoshka_curve(analysis.encoder, analysis.inputs.tasks, dimensions)
    by_precision = precision_curve(analysis.encoder, analysis.inputs.tasks, ranges=analysis.calibration())
    series, model = _series_names(analysis.inputs.tasks), analysis.encoder.name
    figures = [
        _figure(
            analysis,
            "matryoshka.png",
            curve_figure(
                _by_task(by_dimension, series),
                "dimensions kept (the first k, re-normalized)",
                "main score × 100",
                "Score against Matryoshka dimension",
                model,
                log_x=True,
            ),
        ),
        _figure(
            analysis,
            "precision.png",
            bars_figure(
                _by_task(by_precision, series),
                "output precision",
                "main score × 100",
                "Score against output precision",
                model,
            ),
        ),
    ]
    tasks = [task.name for task in analysis.inputs.tasks]
    text = (
        "Main scores (× 100) with vectors cut to the first k dimensions (re-normalized):\n\n"
        + markdown_table(["dimensions", *tasks], [(d, *(100 * s[t] for t in tasks)) for d, s in by_dimension.items()])
        + "\n\nMain scores (× 100) on quantized codes (int8 buckets calibrated on the corpus, binary signs):\n\n"
        + markdown_table(["precision", *tasks], [(p, *(100 * s[t] for t in tasks)) for p, s in by_precision.items()])
    )
    return Section(
        "efficiency", "Efficiency curves", text, figures, {"matryoshka": by_dimension, "precision": by_precision}
    )


def inversion_section(analysis: Analysis) -> Section:
    inputs = analysis.inputs
    if not (inputs.inversion_train and inputs.inversion_test):
        return Section("inversion", "Inversion risk", "No inversion train and test sentences given.")
    tokenizer = analysis.model.backbone.tokenizer
    run = run_probe(analysis.vectors, inputs.inversion_train, inputs.inversion_test, tokenizer, inputs.probe)
    test_vectors = analysis.vectors(inputs.inversion_test)
    defenses = _defenses(test_vectors.shape[1], analysis.calibration())
    recovered = {
        name: inversion_scores(run.probe.generate(transform(test_vectors)), inputs.inversion_test)
        for name, transform in defenses.items()
    }
    retrained = _retrained_probes(analysis, defenses) if inputs.adaptive_probe else {}
    costs = analysis.scores(defenses)
    text = (
        f"A GEIA-style decoder ({inputs.probe.layers} layers, width {inputs.probe.width}, {inputs.probe.epochs} epochs, "
        f"{run.train_seconds:.0f} s) learned to write {len(inputs.inversion_train)} sentences back from their vectors, "
        f"then wrote {len(inputs.inversion_test)} unseen sentences of another set.\n\n"
        + markdown_table(
            ["decoder input", "token F1", "BLEU", "exact match"],
            [
                ("true vectors", 100 * run.held_out.token_f1, 100 * run.held_out.bleu, 100 * run.held_out.exact_match),
                (
                    "random vectors",
                    100 * run.random_baseline.token_f1,
                    100 * run.random_baseline.bleu,
                    100 * run.random_baseline.exact_match,
                ),
            ],
        )
        + "\n\nExamples (sentence → written back):\n\n"
        + "\n".join(f"- {a} → {b}" for a, b in run.examples)
        + "\n\n"
        + _defense_table(recovered, retrained, costs, [task.name for task in inputs.tasks])
    )
    data = {
        "held_out": asdict(run.held_out),
        "random": asdict(run.random_baseline),
        "train_seconds": run.train_seconds,
        "examples": run.examples,
        "defenses": {name: asdict(scores) for name, scores in recovered.items()},
        "retrained": {name: asdict(scores) for name, scores in retrained.items()},
        "costs": costs,
    }
    return Section("inversion", "Inversion risk", text, data=data)


def _retrained_probes(analysis: Analysis, defenses: dict[str, Transform]) -> dict[str, InversionScores]:
    """The adaptive attacker: for each defense, a probe trained on defended vectors and read on defended vectors."""
    inputs = analysis.inputs
    train, test = analysis.vectors(inputs.inversion_train), analysis.vectors(inputs.inversion_test)
    scores = {}
    for name, transform in defenses.items():
        if transform is identity:
            continue
        logger.info(f"inversion: retraining the probe on {name} vectors")
        probe = InversionProbe.train_on(
            transform(train), inputs.inversion_train, analysis.model.backbone.tokenizer, inputs.probe
        )
        scores[name] = inversion_scores(probe.generate(transform(test)), inputs.inversion_test)
    return scores


def _defense_table(recovered: dict, retrained: dict, costs: dict, tasks: list[str]) -> str:
    header = ["defense", "token F1", "BLEU", *(["token F1, retrained probe"] if retrained else []), *tasks]
    rows = [
        (
            name,
            100 * scores.token_f1,
            100 * scores.bleu,
            *([100 * retrained[name].token_f1 if name in retrained else "-"] if retrained else []),
            *(100 * costs[name][task] for task in tasks),
        )
        for name, scores in recovered.items()
    ]
    caveat = (
        "A retrained probe learned from changed vectors, as an attacker with access to the changed vectors would."
        if retrained
        else "The probe was trained on unchanged vectors; an attacker who trains on changed ones "
        "recovers more (`adaptive_probe`, CLI `--adaptive-probe`, measures that)."
    )
    return (
        "Defenses: what the probe recovers from changed vectors (× 100) and what the change costs on the tasks "
        f"(main score × 100). {caveat}\n\n" + markdown_table(header, rows)
    )


def bias_section(analysis: Analysis) -> Section:
    results = []
    for name in bias.TESTS:
        results.append(bias.association_test(analysis.vectors, name))
        results.append(bias.association_test(analysis.vectors, name, shuffle_targets=True))
    gap = bias.counterfactual_gap(analysis.vectors)
    text = (
        "WEAT/SEAT association tests over template sentences (effect size d, one-sided permutation p); each "
        "shuffled control re-partitions the targets at random.\n\n"
        + markdown_table(["test", "effect size", "p-value"], [(r.test, r.effect_size, r.p_value) for r in results])
        + f"\n\nCounterfactual gap c(query, 'He …') − c(query, 'She …') over {len(gap.gaps)} occupations: "
        f"mean {gap.mean_gap:+.4f}, p = {gap.p_value:.4f} (sign-flip permutation).\n\n"
        + markdown_table(["occupation", "gap"], sorted(gap.gaps.items(), key=lambda item: -abs(item[1])))
    )
    return Section(
        "bias", "Bias", text, data={"association": [asdict(r) for r in results], "counterfactual": asdict(gap)}
    )


def interpret_section(analysis: Analysis) -> Section:
    inputs, model = analysis.inputs, analysis.model
    parts, data = [], {}
    if inputs.pairs:
        first, second, gold, _ = inputs.pairs
        best = int(np.argmax(gold))
        explanation = explain_similarity(model, first[best], second[best], inputs.corpus[:2000])
        data["explanation"] = asdict(explanation)
        parts.append(
            f"Why c({first[best]!r}, {second[best]!r}) = {explanation.similarity:.4f}: the words whose deletion "
            "lowers it most, and the nearest corpus texts.\n\n"
            + markdown_table(["first text: word", "drop"], explanation.words_a[:5])
            + "\n\n"
            + markdown_table(["second text: word", "drop"], explanation.words_b[:5])
            + "\n\n"
            + markdown_table(["nearest to the first", "similarity"], explanation.neighbours_a)
            + "\n\n"
            + markdown_table(["nearest to the second", "similarity"], explanation.neighbours_b)
        )
    if getattr(getattr(model, "backbone", None), "kind", None) == "decoder" and not len(model.dense):
        samples = inputs.corpus[:3]
        tokens = lm_head_tokens(model, samples, k=8)
        data["lm_head"] = dict(zip(samples, tokens))
        parts.append(
            markdown_table(
                ["text", "top LM-head tokens"],
                [(text, ", ".join(f"{t!r} {p:.2f}" for t, p in top)) for text, top in zip(samples, tokens)],
            )
        )
    return Section("interpret", "Interpretability", "\n\n".join(parts) or "No pairs given to explain.", data=data)


def figures_section(analysis: Analysis) -> Section:
    inputs, figures, parts, model = analysis.inputs, [], [], analysis.encoder.name
    if inputs.labelled:
        texts, labels = _frequent_labels(*inputs.labelled)
        points = project_2d(analysis.vectors(texts))
        figures.append(
            _figure(analysis, "projection.png", projection_figure(points, labels, model, data=inputs.labelled_source))
        )
        _write_projection(analysis.folder / PROJECTION_JSON, model, points, texts, labels)
        parts.append(
            f"2-D PCA map of {len(texts)} texts of the {PROJECTION_LABELS} most frequent labels of "
            f"{inputs.labelled_source} (points in `{PROJECTION_JSON}`)."
        )
    if inputs.pairs:
        positive, negative = _pair_similarities(analysis, inputs.pairs)
        similar, dissimilar = _pair_meanings(inputs.pairs[3], inputs.pairs_source)
        histogram = similarity_histogram(
            positive, negative, model, analysis.encoder.similarity_name, similar, dissimilar
        )
        figures.append(_figure(analysis, "similarity_histogram.png", histogram))
        parts.append(
            f"{analysis.encoder.similarity_name} similarity of {len(positive)} similar pairs ({similar}) and "
            f"{len(negative)} dissimilar pairs ({dissimilar}): mean {np.mean(positive):.4f} vs {np.mean(negative):.4f}."
        )
    return Section("figures", "Figures", "\n\n".join(parts) or "No labelled set or pairs given.", figures)


SECTIONS: dict[str, Callable[[Analysis], Section]] = {
    "geometry": geometry_section,
    "whitening": whitening_section,
    "efficiency": efficiency_section,
    "inversion": inversion_section,
    "bias": bias_section,
    "interpret": interpret_section,
    "figures": figures_section,
}


# ----------------------------------------------------------------- helpers


def check_sections(sections: Sequence[str] | None) -> list[str]:
    """The section names to run: ``sections``, or all of ``SECTIONS`` for None.

    Raises:
        ValueError: an unknown name (the known ones listed).
    """
    names = list(sections or SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from: {', '.join(SECTIONS)}")
    return names


def _run_key(model: DenseModel, inputs: AnalysisInputs) -> str:
    """sha256 of the model (its fingerprint: weights and settings) and of everything the sections read."""
    unread = ("tasks", "save_whitened", "labelled_source", "pairs_source")  # names only: the data is described
    described = {name: value for name, value in asdict(inputs).items() if name not in unread}
    described["tasks"] = [str(task.path.resolve()) for task in inputs.tasks]
    described["model"] = model.fingerprint
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _defenses(dimension: int, ranges: np.ndarray) -> dict[str, Transform]:
    return {
        "none": identity,
        "noise 0.25": gaussian_noise(0.25),
        "noise 0.5": gaussian_noise(0.5),
        "noise 1.0": gaussian_noise(1.0),
        "int8": precision("int8", ranges),
        "binary": precision("binary"),
        f"first {dimension // 2} dims": truncate(dimension // 2),
        f"first {dimension // 4} dims": truncate(dimension // 4),
    }


def _geometry_table(shapes: dict) -> str:
    rows = [
        (name, s.n_vectors, s.dimension, s.anisotropy, s.effective_rank, *s.top_variance.values())
        for name, s in shapes.items()
    ]
    tops = [f"variance in top {k}" for k in next(iter(shapes.values())).top_variance]
    return markdown_table(["vectors", "n", "dimension", "mean pairwise cosine", "effective rank", *tops], rows)


def _series_names(tasks: Sequence[Task]) -> dict[str, str]:
    """Task name -> its name in a figure's legend, with its main score (the metric plotted): ``sts/toy
    (cosine_spearman)``."""
    return {task.name: f"{task.name} ({task.main_score})" for task in tasks}


def _by_task(curves: dict, names: dict[str, str]) -> dict[str, dict]:
    """{x: {task: y}} -> {names[task]: {x: 100 y}} for plotting one line or bar series per task."""
    tasks = next(iter(curves.values())).keys()
    return {names[task]: {x: 100 * scores[task] for x, scores in curves.items()} for task in tasks}


def _frequent_labels(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    """The texts of the ``PROJECTION_LABELS`` most frequent labels (ties by name), at most ``PROJECTION_POINTS``."""
    counts = Counter(labels)
    keep = set(sorted(counts, key=lambda label: (-counts[label], label))[:PROJECTION_LABELS])
    rows = [i for i, label in enumerate(labels) if label in keep][:PROJECTION_POINTS]
    return [texts[i] for i in rows], [labels[i] for i in rows]


def _pair_similarities(analysis: Analysis, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of the positive pairs (gold in the top fifth of the range) and the negative ones (bottom fifth)."""
    first, second, gold, (low, high) = pairs
    similarity = pairwise_similarity(
        analysis.vectors(first), analysis.vectors(second), analysis.encoder.similarity_name
    )
    gold = np.asarray(gold)
    span = high - low
    return similarity[gold >= high - PAIR_SHARE * span], similarity[gold <= low + PAIR_SHARE * span]


def _pair_meanings(score_range: tuple[float, float], source: str) -> tuple[str, str]:
    """What made a pair similar and dissimilar (``_pair_similarities``), said for a figure: ``gold score ≥ 4 of
    0–5 in sts/stsb-en`` (PairClassification's 0/1 labels: ``gold score ≥ 0.8 of 0–1``, label 1)."""
    low, high = score_range
    span = high - low
    return (
        f"gold score ≥ {high - PAIR_SHARE * span:g} of {low:g}–{high:g} in {source}",
        f"gold score ≤ {low + PAIR_SHARE * span:g} of {low:g}–{high:g} in {source}",
    )


def _write_projection(path: Path, model: str, points: np.ndarray, texts: list[str], labels: list[str]) -> None:
    """The 2-D map's points as JSON, atomically: ``{"model", "method": "pca", "points": [{"x", "y", "text",
    "label"}]}``."""
    rows = [
        {"x": float(x), "y": float(y), "text": text, "label": label}
        for (x, y), text, label in zip(points, texts, labels)
    ]
    with atomic_path(path, overwrite=True) as temporary:
        document = {"model": model, "method": "pca", "points": rows}
        temporary.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def _figure(analysis: Analysis, name: str, figure: Figure) -> str:
    """Save ``figure`` as ``name`` in the analysis folder; returns ``name``."""
    save(figure, analysis.folder / name)
    return name


# ----------------------------------------------------------------- inputs from task folders


def task_split(tasks: list[Task], spec: str) -> tuple[Task, str | None]:
    """``NAME[:SPLIT]`` -> (the one task it names, the split or None for the task's own).

    Raises:
        ValueError: no task or several tasks match NAME (the candidates named).
    """
    name, _, split = spec.partition(":")
    matches = select_tasks(tasks, [name])
    if len(matches) != 1:
        raise ValueError(f"{name!r} names {len(matches)} tasks ({', '.join(t.name for t in matches)}); name one")
    return matches[0], split or None


def inputs_from_tasks(
    root: str | Path,
    corpus: str,
    tasks: Sequence[str] = (),
    labelled: str | None = None,
    pairs: str | None = None,
    inversion_train: str | None = None,
    inversion_test: str | None = None,
    inversion_test_size: int = 1000,
    seed: int = 0,
    **options,
) -> AnalysisInputs:
    """``AnalysisInputs`` from the task folders below ``root``, each named ``NAME[:SPLIT]`` (``sts/stsb-en:train``).

    Args:
        corpus: texts for geometry and whitening; tasks: tasks scored; labelled: a Classification/Clustering
            task for the 2-D map; pairs: an STS or PairClassification task for the histogram and the explained
            pair; inversion_train / inversion_test: the probe's sentences; inversion_test_size: test sentences
            drawn at random (seeded); options: the other ``AnalysisInputs`` fields.
    """
    known = discover_tasks(root)
    corpus_task, corpus_split = task_split(known, corpus)
    inputs = AnalysisInputs(
        task_texts(corpus_task, corpus_split), [task_split(known, name)[0] for name in tasks], **options
    )
    if labelled:
        inputs.labelled = labelled_texts(*task_split(known, labelled))
        inputs.labelled_source = labelled
    if pairs:
        pair_task, pair_split = task_split(known, pairs)
        inputs.pairs_source = pairs
        score_range = tuple(pair_task.metadata.get("score_range", (0, 5))) if pair_task.type == "STS" else (0.0, 1.0)
        inputs.pairs = (*scored_pairs(pair_task, pair_split), score_range)
    if inversion_train and inversion_test:
        inputs.inversion_train = task_texts(*task_split(known, inversion_train))
        test = task_texts(*task_split(known, inversion_test))
        rows = np.random.default_rng(seed).permutation(len(test))[:inversion_test_size]
        inputs.inversion_test = [test[row] for row in sorted(rows)]
    return inputs
