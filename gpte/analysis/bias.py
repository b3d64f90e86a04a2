"""Bias tests on sentence embeddings.

Association tests (WEAT, Caliskan et al. 2017; over sentence templates as SEAT, May et al. 2019). Each
word's vector is the mean of its template sentences' unit vectors; with c(u, v) the cosine,

    s(w, A, B) = mean_a c(w, a) - mean_b c(w, b)
    effect size d = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w)     (sample std)
    p = P[ sum_{X_i} s - sum_{Y_i} s >= observed ]  over equal-size re-partitions (X_i, Y_i) of X u Y

one-sided, exact when there are at most ``EXACT_LIMIT`` partitions, else over ``permutations`` random ones
(p = (hits + 1) / (permutations + 1)). Words, not sentences, are the permuted units: the template
sentences of one word are not independent draws. The shuffled control re-partitions X u Y at random
before testing, so it has no association by construction.

Counterfactual gap: for query q and answers (a, b) that differ only in a group word,
gap = c(q, a) - c(q, b); reported as the mean gap over pairs with a sign-flip permutation p-value
(two-sided: is the mean gap different from 0).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpte.analysis.bias_sets import (
    COUNTERFACTUAL_PAIR,
    COUNTERFACTUAL_QUERY,
    OCCUPATIONS,
    TEMPLATES,
    TESTS,
    AssociationTest,
)
from gpte.analysis.geometry import unit_rows
from gpte.analysis.views import Embed

EXACT_LIMIT = 100_000
PERMUTATIONS = 10_000


@dataclass
class AssociationResult:
    """Effect size d (-2..2; 0 = no association) and one-sided permutation p-value of one test."""

    test: str
    effect_size: float
    p_value: float
    n_targets: int
    n_attributes: int
    exact: bool


@dataclass
class CounterfactualResult:
    """Mean similarity gap c(q, a) - c(q, b) over pairs, its two-sided p-value, and the gap per pair."""

    mean_gap: float
    p_value: float
    gaps: dict[str, float]


def word_vectors(embed: Embed, words: Sequence[str], templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """(n_words, d): each word's template sentences, unit-normalized and averaged, then unit-normalized."""
    if not templates or any("{}" not in template for template in templates):
        raise ValueError("templates must be a non-empty list of strings with a {} slot for the word")
    sentences = [template.format(word) for word in words for template in templates]
    vectors = unit_rows(np.asarray(embed(sentences), dtype=np.float64)).reshape(len(words), len(templates), -1)
    return unit_rows(vectors.mean(axis=1))


def association_test(
    embed: Embed,
    test: AssociationTest | str,
    templates: Sequence[str] = TEMPLATES,
    permutations: int = PERMUTATIONS,
    shuffle_targets: bool = False,
    seed: int = 0,
) -> AssociationResult:
    """Run one association test (a name from ``bias_sets.TESTS`` or an ``AssociationTest``).

    Args:
        embed: texts -> (n, d) vectors.
        shuffle_targets: the control: X u Y re-partitioned at random (with ``seed``) before the test.

    Raises:
        ValueError: an unknown test name (the names listed), a set with fewer than 2 words, unequal X and Y.
    """
    test = _get_test(test)
    if len(test.targets_x) != len(test.targets_y):
        raise ValueError(
            f"{test.name}: X and Y must have the same size, got {len(test.targets_x)} and {len(test.targets_y)}"
        )
    if min(map(len, (test.targets_x, test.attributes_a, test.attributes_b))) < 2:
        raise ValueError(f"{test.name}: every word set needs at least 2 words")
    rng = np.random.default_rng(seed)
    targets = word_vectors(embed, test.targets_x + test.targets_y, templates)
    a = word_vectors(embed, test.attributes_a, templates)
    b = word_vectors(embed, test.attributes_b, templates)
    association = (targets @ a.T).mean(axis=1) - (targets @ b.T).mean(axis=1)
    if shuffle_targets:
        association = rng.permutation(association)
    n = len(test.targets_x)
    effect = (association[:n].mean() - association[n:].mean()) / association.std(ddof=1)
    p_value, exact = _permutation_p(association, n, permutations, rng)
    return AssociationResult(
        test.name + (" (shuffled control)" if shuffle_targets else ""),
        float(effect),
        p_value,
        len(association),
        len(a) + len(b),
        exact,
    )


def _permutation_p(association: np.ndarray, n: int, permutations: int, rng: np.random.Generator) -> tuple[float, bool]:
    """One-sided p of sum(first n) - sum(rest) >= observed over re-partitions; (p, whether exact)."""
    total = association.sum()
    observed = 2 * association[:n].sum() - total
    if math.comb(len(association), n) <= EXACT_LIMIT:
        sums = np.array([association[list(rows)].sum() for rows in itertools.combinations(range(len(association)), n)])
        return float(np.mean(2 * sums - total >= observed - 1e-12)), True
    draws = np.argsort(rng.random((permutations, len(association))), axis=1)[:, :n]
    statistics = 2 * association[draws].sum(axis=1) - total
    return float((np.sum(statistics >= observed - 1e-12) + 1) / (permutations + 1)), False


def counterfactual_gap(
    embed: Embed,
    items: Sequence[str] = OCCUPATIONS,
    query: str = COUNTERFACTUAL_QUERY,
    pair: tuple[str, str] = COUNTERFACTUAL_PAIR,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> CounterfactualResult:
    """Similarity gap c(query(item), pair[0](item)) - c(query(item), pair[1](item)) over ``items``.

    Raises:
        ValueError: fewer than 2 items, or templates without a {} slot.
    """
    if len(items) < 2:
        raise ValueError(f"need at least 2 items, got {len(items)}")
    if any("{}" not in template for template in (query, *pair)):
        raise ValueError("query and pair templates need a {} slot for the item")
    vectors = unit_rows(np.asarray(embed([t.format(item) for item in items for t in (query, *pair)]), dtype=np.float64))
    q, a, b = vectors[0::3], vectors[1::3], vectors[2::3]
    gaps = (q * a).sum(axis=1) - (q * b).sum(axis=1)
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(permutations, len(gaps)))
    null = np.abs((signs * gaps).mean(axis=1))
    p_value = float((np.sum(null >= abs(gaps.mean()) - 1e-12) + 1) / (permutations + 1))
    return CounterfactualResult(float(gaps.mean()), p_value, dict(zip(items, gaps.tolist())))


def _get_test(test: AssociationTest | str) -> AssociationTest:
    if isinstance(test, AssociationTest):
        return test
    if test not in TESTS:
        raise ValueError(f"unknown association test {test!r}; choose one of: {', '.join(TESTS)}")
    return TESTS[test]
