"""Evaluation shared by every recogniser: accuracy, top-5, confusion, per-person accuracy, timing.

Functions take plain arrays (scores or predicted names), so classifiers (probabilities) and
embedding galleries (answers by name) are measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facelab.errors import FaceLabError
from facelab.recognition import Identification, score_text


def score_metrics(labels: np.ndarray, scores: np.ndarray, names: Sequence[str], k: int = 5) -> dict:
    """Metrics from (N,) true label indices and (N, people) scores (higher = more likely).

    Returns accuracy, top5 (top-k with k = min(5, people)), confusion (people x people list of lists,
    rows = true person), per_person ({name: accuracy}, people absent from `labels` left out) and n.
    """
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(scores, np.float64)
    if len(labels) == 0:
        raise FaceLabError("nothing to evaluate: the test split is empty")
    if scores.shape != (len(labels), len(names)):
        raise FaceLabError(f"scores have shape {scores.shape}; expected ({len(labels)}, {len(names)})")
    if not np.isfinite(scores).all():
        raise FaceLabError("the model gave scores that are not numbers (NaN or infinite); it cannot be evaluated")
    predicted = scores.argmax(axis=1)
    # Each true person's rank with argmax's tie rule (the lower index first). scikit-learn's top_k_accuracy_score
    # breaks ties the other way, so with tied scores (a collapsed encoder, underflowing softmax) its top-5 fell
    # below the accuracy.
    true_scores = scores[np.arange(len(labels)), labels][:, None]
    index = np.arange(len(names))[None, :]
    rank = (scores > true_scores).sum(axis=1) + ((scores == true_scores) & (index < labels[:, None])).sum(axis=1)
    top = float(np.mean(rank < min(k, len(names))))
    out = label_metrics(labels, predicted, names)
    out["top5"] = top
    return out


def weak_model_advice(metrics: dict, kind: str = "") -> str | None:
    """A warning when a model named under half of its test faces rightly, else None (no test figure: None)."""
    accuracy = (metrics or {}).get("accuracy")
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or accuracy >= 0.5:
        return None
    return (f"This model named only {accuracy:.0%} of its test faces rightly, so most of its answers here will be "
            f"wrong or \"unknown\". Train {kind or 'it'} for more epochs (its preset's budget) before relying on it.")


def people_changed_since_test(metrics: dict, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(added, removed): who a model knows now and did not when `metrics` were measured, and the reverse (people
    enrolled in or removed from a gallery since its test); empty when the test did not record its people."""
    tested = (metrics or {}).get("confusion_names")
    if not tested:
        return [], []
    return [n for n in names if n not in set(tested)], [n for n in tested if n not in set(names)]


def label_metrics(labels: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    """accuracy, confusion, per_person and n from true and predicted label indices (-1 = unknown/none)."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(labels, np.int64)
    predicted = np.asarray(predicted, np.int64)
    people = np.arange(len(names))
    cm = confusion_matrix(labels, predicted, labels=people)  # an "unknown" (-1) answer lands in no column
    per_person = {names[i]: float(cm[i, i] / row) for i, row in enumerate(cm.sum(axis=1)) if row}
    return {"accuracy": float(np.mean(predicted == labels)), "confusion": cm.tolist(),
            "per_person": per_person, "n": int(len(labels))}


@dataclass(frozen=True)
class Misclassified:
    """The test faces a model named wrongly: the first few of them, captioned with the true name over "→ predicted"."""

    faces: np.ndarray  # (M, S, S), M <= the limit given to `misclassified`
    captions: list[str]
    count: int  # all wrongly named faces
    total: int  # all test faces


def misclassified(faces: np.ndarray, true_names: Sequence[str], predicted: Sequence[str],
                  limit: int = 48) -> Misclassified:
    """The faces whose predicted name differs from the true one, the first `limit` kept (so a large test set
    does not stay in memory)."""
    if len(true_names) != len(predicted) or len(faces) != len(predicted):
        raise FaceLabError(f"{len(faces)} faces, {len(true_names)} true names and {len(predicted)} predictions")
    wrong = [i for i, (t, p) in enumerate(zip(true_names, predicted)) if t != p]
    shown = wrong[:limit]
    return Misclassified(faces=np.asarray(faces)[shown], captions=[f"{true_names[i]}\n→ {predicted[i]}" for i in shown],
                         count=len(wrong), total=len(predicted))


@dataclass(frozen=True)
class AnswerCheck:
    """Answers for faces whose true names are known: a caption per face and the counts behind them."""

    captions: list[str]
    outcomes: list[str]  # per face: "right", "wrong" or "unknown" (a known person turned away)
    right: int
    wrong: int
    unknown: int


def check_answers(true_names: Sequence[str], answers: Sequence[Identification],
                  known_people: Sequence[str]) -> AnswerCheck:
    """Compare answers with the truth. A face of someone in `known_people` is right when named so; anyone
    else's face is right when answered "unknown" and wrong when named."""
    known = set(known_people)
    captions, outcomes = [], []
    for truth, answer in zip(true_names, answers, strict=True):
        if not answer.known:
            outcome = "unknown" if truth in known else "right"
            captions.append(f"{truth}: unknown")
        elif answer.name == truth:
            outcome = "right"
            captions.append(f"{truth} ✓ {score_text(answer)}")  # not a bare number beside a distance slider
        else:
            outcome = "wrong"
            captions.append(f"{truth}\n✗ {answer.name}")
        outcomes.append(outcome)
    return AnswerCheck(captions, outcomes, outcomes.count("right"), outcomes.count("wrong"), outcomes.count("unknown"))


def time_per_face(fn: Callable[[np.ndarray], object], faces: np.ndarray, repeats: int = 3) -> dict:
    """Inference time of `fn` (warmed up first): ms per face over the whole batch, and for one face alone.

    Returns {"infer_ms_per_face": batch time / N (best of `repeats`), "latency_ms_one_face": one face (median)}.
    """
    if len(faces) == 0:
        raise FaceLabError("no faces to time")
    fn(faces)
    fn(faces[:1])
    batch = min(_timed(fn, faces) for _ in range(repeats))
    single = float(np.median([_timed(fn, faces[:1]) for _ in range(max(5, repeats))]))
    return {"infer_ms_per_face": 1000 * batch / len(faces), "latency_ms_one_face": 1000 * single}


def _timed(fn: Callable[[np.ndarray], object], faces: np.ndarray) -> float:
    start = time.perf_counter()
    fn(faces)
    return time.perf_counter() - start


HEADLINE = {"accuracy": "test accuracy", "top5": "top-5", "recon_psnr": "PSNR (dB)", "recon_mse": "MSE",
            "infer_ms_per_face": "ms / face"}


def headline_metrics(metrics: dict) -> list[tuple[str, str]]:
    """(label, formatted value) for the headline numbers an evaluation has, in a fixed order."""
    shown = []
    for key, label in HEADLINE.items():
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            text = f"{value:.1%}" if key in ("accuracy", "top5") else f"{value:.4g}" if key == "recon_mse" else f"{value:.2f}"
            shown.append((label, text))
    return shown
