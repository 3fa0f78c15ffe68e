"""F1 with a margin and Cover, from van den Burg & Williams, "An Evaluation of Change Point
Detection Algorithms" (2020), section 3 (their equations for precision, recall and covering).

Conventions followed (those of the paper):

- A change point is the index of the first sample of a new segment; indices run 0 .. n - 1.
  An index outside that range is refused (ValueError naming it).
- The start, index 0, is a change point of every annotation and of every prediction: it is
  added to each set before scoring. A detector that reports nothing therefore has precision
  1 and, on a series without annotated changes, recall 1 (F1 = 1, Cover = 1).
- Several annotators are supported as the paper defines them: ``annotations`` is a list of
  sets, one per annotator (a single annotation is a list of one).
- True positives TP(T, X): each annotated point tau of T, in increasing order, is matched to
  the closest unused prediction x with |tau - x| <= margin (ties to the smaller index); a
  prediction matches at most one annotation, and duplicates count once (the inputs are sets).
- Precision P = |TP(T*, X)| / |X|, with T* the union of the annotators' sets; recall
  R = (1/K) sum_k |TP(T_k, X)| / |T_k|; F1 = 2 P R / (P + R) (0 when both are 0).
- Cover C(G', G) = (1/n) sum over the annotated segments A of G of |A| max_{A' in G'}
  |A n A'| / |A u A'|, G' the predicted segmentation, averaged over the annotators.

``match_counts`` leaves the start out (of the annotation and of the prediction): its
counts add up over many series into a precision and a recall of the changes themselves,
which the free match of the start would inflate.
"""

from __future__ import annotations

from typing import Iterable, Sequence

MARGIN = 5


def change_set(points: Iterable[int], n: int, what: str = "change point") -> set[int]:
    """The set of change points with the start (0) added; refuses indices outside 0 .. n - 1."""
    if n < 1:
        raise ValueError(f"a series needs at least one sample, got n = {n}")
    out = {0}
    for p in points:
        if int(p) != p or not 0 <= p < n:
            raise ValueError(f"{what} {p!r} is not an index of a series of {n} samples (0 .. {n - 1})")
        out.add(int(p))
    return out


def true_positives(annotated: set[int], predicted: set[int], margin: int = MARGIN) -> set[int]:
    """The annotated points matched, each to its closest unused prediction within ``margin``."""
    unused = set(predicted)
    matched = set()
    for tau in sorted(annotated):
        close = [(abs(tau - x), x) for x in unused if abs(tau - x) <= margin]
        if close:
            matched.add(tau)
            unused.remove(min(close)[1])
    return matched


def precision_recall(
    annotations: Sequence[Iterable[int]], predictions: Iterable[int], n: int, margin: int = MARGIN
) -> tuple[float, float]:
    """Precision and recall of ``predictions`` against one or several annotators' sets."""
    if not annotations:
        raise ValueError("no annotator: pass [[]] for a series annotated as having no change")
    truth = [change_set(a, n, "annotated change point") for a in annotations]
    predicted = change_set(predictions, n, "predicted change point")
    union = set().union(*truth)
    precision = len(true_positives(union, predicted, margin)) / len(predicted)
    recall = sum(len(true_positives(t, predicted, margin)) / len(t) for t in truth) / len(truth)
    return precision, recall


def match_counts(annotated: Iterable[int], predicted: Iterable[int], n: int, margin: int = MARGIN) -> tuple[int, int, int]:
    """(matched, predicted, annotated) change points of one series, the start (0) left out
    of both sets: matched annotations over predicted is a precision, over annotated a recall."""
    truth = change_set(annotated, n, "annotated change point") - {0}
    guess = change_set(predicted, n, "predicted change point") - {0}
    return len(true_positives(truth, guess, margin)), len(guess), len(truth)


def f1(annotations: Sequence[Iterable[int]], predictions: Iterable[int], n: int, margin: int = MARGIN) -> float:
    """F1 (harmonic mean of precision and recall) with a margin of ``margin`` samples."""
    p, r = precision_recall(annotations, predictions, n, margin)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def segments(points: Iterable[int], n: int, what: str = "change point") -> list[range]:
    """The segmentation of 0 .. n - 1 that the change points induce (each starts one segment)."""
    starts = sorted(change_set(points, n, what))
    return [range(a, b) for a, b in zip(starts, starts[1:] + [n])]


def jaccard(a: range, b: range) -> float:
    overlap = max(0, min(a.stop, b.stop) - max(a.start, b.start))
    return overlap / (len(a) + len(b) - overlap)


def cover(annotations: Sequence[Iterable[int]], predictions: Iterable[int], n: int) -> float:
    """The covering of each annotator's segmentation by the predicted one, averaged."""
    if not annotations:
        raise ValueError("no annotator: pass [[]] for a series annotated as having no change")
    truths = [segments(a, n, "annotated change point") for a in annotations]
    predicted = segments(predictions, n, "predicted change point")
    scores = []
    for truth in truths:
        scores.append(sum(len(s) * max(jaccard(s, p) for p in predicted) for s in truth) / n)
    return sum(scores) / len(scores)
