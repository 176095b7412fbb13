"""The shared metrics (`facelab.evaluation`) against hand computations on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from facelab.errors import FaceLabError
from facelab.evaluation import score_metrics


def test_score_metrics_match_a_hand_computation():
    names = ["a", "b", "c"]
    scores = np.array([[0.7, 0.2, 0.1],   # a: right
                       [0.5, 0.3, 0.2],   # b: named a, b second
                       [0.1, 0.2, 0.7],   # c: right
                       [0.6, 0.1, 0.3]])  # c: named a, c second
    m = score_metrics(np.array([0, 1, 2, 2]), scores, names, k=2)
    assert m["accuracy"] == 0.5 and m["top5"] == 1.0 and m["n"] == 4
    assert m["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    assert m["per_person"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert score_metrics(np.array([0, 1, 2, 2]), scores, names, k=1)["top5"] == 0.5  # top-1 is the accuracy


def test_top_k_is_never_below_the_accuracy_when_scores_tie():
    # A collapsed encoder gives every person the same score: argmax names person 0, so top-5 must count it too.
    # scikit-learn's top_k_accuracy_score breaks such ties the other way and gave 0.0 here.
    m = score_metrics(np.array([0]), np.full((1, 7), 0.5), list("abcdefg"))
    assert m["accuracy"] == 1.0 and m["top5"] == 1.0
    m = score_metrics(np.array([6]), np.full((1, 7), 0.5), list("abcdefg"))
    assert m["accuracy"] == 0.0 and m["top5"] == 0.0  # five others come first under the same rule
    rng = np.random.default_rng(0)  # without ties it is scikit-learn's figure
    labels, scores = rng.integers(0, 9, 200), rng.random((200, 9))
    assert score_metrics(labels, scores, list("abcdefghi"))["top5"] == pytest.approx(
        top_k_accuracy_score(labels, scores, k=5, labels=np.arange(9)))


def test_scores_that_are_not_numbers_are_one_message():
    with pytest.raises(FaceLabError, match="not numbers"):
        score_metrics(np.array([0, 1]), np.array([[np.nan, 0.5], [0.2, 0.8]]), ["a", "b"])


def test_a_weak_model_gets_advice_and_a_fair_one_none():
    from facelab.evaluation import weak_model_advice

    assert "only 18% of its test faces" in weak_model_advice({"accuracy": 0.175}, "cnn-gru")
    assert weak_model_advice({"accuracy": 0.9}) is None and weak_model_advice({}) is None
    assert weak_model_advice({"accuracy": None}) is None


def test_people_changed_since_the_test_are_named():
    from facelab.evaluation import people_changed_since_test

    metrics = {"confusion_names": ["a", "b", "c"]}
    assert people_changed_since_test(metrics, ["a", "b", "c", "Newbie"]) == (["Newbie"], [])
    assert people_changed_since_test(metrics, ["a", "c"]) == ([], ["b"])
    assert people_changed_since_test({}, ["a"]) == ([], [])  # a test that did not record its people
