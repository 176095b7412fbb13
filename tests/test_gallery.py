"""The embedding gallery on real Olivetti faces (whitened-PCA embedding fitted on training faces only)."""

from __future__ import annotations

import copy
import dataclasses
import math

import cv2
import numpy as np
import pytest
from sklearn.decomposition import PCA

from facelab.data import split_dataset
from facelab.errors import FaceLabError
from facelab.gallery import Calibration, Gallery
from facelab.recognition import UNKNOWN

KNOWN = 30  # people 0..29 are enrolled; 30..39 stay strangers unless a test enrols them


@pytest.fixture(scope="module")
def split(olivetti):
    return split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)


@pytest.fixture(scope="module")
def embed(split):
    """A cheap, deterministic face embedding learnt from the known people's training faces only."""
    known = split.train.labels < KNOWN
    pca = PCA(40, whiten=True, random_state=0).fit(split.train.images[known].reshape(int(known.sum()), -1))
    return lambda faces: pca.transform(np.asarray(faces).reshape(len(faces), -1)).astype(np.float32)


def names_of(ds):
    return [ds.names[i] for i in ds.labels]


def make_gallery(split, embed, people=range(KNOWN), **kwargs) -> Gallery:
    gallery = Gallery(embed, **kwargs)
    for p in people:
        gallery.enrol(split.train.names[p], split.train.images[split.train.labels == p])
    return gallery


def test_enrolled_people_are_identified(split, embed):
    gallery = make_gallery(split, embed)
    assert gallery.names == split.train.names[:KNOWN]
    assert gallery.counts()[gallery.names[0]] == 4 and gallery.code_size == 40
    test = split.test.subset(np.flatnonzero(split.test.labels < KNOWN))
    answers = gallery.identify(test.images)
    assert len(answers) == len(test.images)
    accuracy = np.mean([a.name == n for a, n in zip(answers, names_of(test))])
    assert accuracy >= 0.85  # measured 0.92 with cosine 1-NN
    first = answers[0]
    assert first.known and 0.0 <= first.confidence <= 1.0
    assert len(first.top) == 5 and first.top[0][1] >= first.top[-1][1]


def test_enrolling_and_removing_people_without_retraining(split, embed):
    gallery = make_gallery(split, embed)
    cal = gallery.calibrate(split.val.images, names_of(split.val), far=0.05)
    assert math.isfinite(cal.threshold) and cal.far <= 0.05 and cal.impostors == len(split.val.images)
    strangers = split.test.subset(np.flatnonzero(split.test.labels >= KNOWN))
    before = gallery.identify(strangers.images)
    assert np.mean([not a.known for a in before]) >= 0.6  # strangers are mostly "unknown" (measured 0.86)

    new_people = split.train.names[KNOWN:]
    for name in new_people:
        label = split.train.names.index(name)
        gallery.enrol(name, split.train.images[split.train.labels == label])
    after = gallery.identify(strangers.images)
    assert np.mean([a.name == n for a, n in zip(after, names_of(strangers))]) >= 0.8

    for name in new_people:
        gallery.remove(name)
    removed = gallery.identify(strangers.images)
    assert not any(a.name in new_people for a in removed)
    assert np.mean([a.name == UNKNOWN for a in removed]) >= 0.6
    with pytest.raises(FaceLabError, match="not in the gallery"):
        gallery.remove(new_people[0])


def test_modes_metrics_and_knn(split, embed):
    test = split.test.subset(np.flatnonzero(split.test.labels < KNOWN))
    for kwargs in ({"mode": "mean"}, {"mode": "all", "k": 2}, {"metric": "euclidean"}):
        gallery = make_gallery(split, embed, **kwargs)
        acc = np.mean([a.name == n for a, n in zip(gallery.identify(test.images), names_of(test))])
        assert acc >= 0.75, kwargs
    with pytest.raises(FaceLabError, match="metric"):
        Gallery(embed, metric="manhattan")


def test_faces_of_other_sizes_and_colour_depths_are_preprocessed(split, embed):
    gallery = make_gallery(split, embed)
    label = 3
    faces = split.test.images[split.test.labels == label]
    # As a photo crop would arrive: 92x112 BGR uint8.
    bgr = [cv2.cvtColor(cv2.resize((f * 255).astype(np.uint8), (92, 112)), cv2.COLOR_GRAY2BGR) for f in faces]
    answers = gallery.identify(bgr)
    assert sum(a.name == split.test.names[label] for a in answers) >= 4
    assert gallery.enrol("photo person", bgr) == len(bgr)


def test_clear_errors_for_bad_galleries_and_faces(split, embed):
    empty = Gallery(embed)
    with pytest.raises(FaceLabError, match="gallery is empty"):
        empty.identify(split.test.images[:1])
    with pytest.raises(FaceLabError, match="no usable face image"):
        empty.enrol("nobody", [])
    with pytest.raises(FaceLabError, match="no usable face image"):
        empty.enrol("broken", [np.zeros((0, 5)), np.full((64, 64), np.nan)])
    with pytest.raises(FaceLabError, match="name"):
        empty.enrol(UNKNOWN, split.test.images[:1])
    gallery = make_gallery(split, embed, people=range(3))
    with pytest.raises(FaceLabError, match="code-size mismatch"):
        gallery.enrol_codes("other model", np.zeros((2, 8), np.float32))
    other = Gallery(lambda faces: np.zeros((len(faces), 8), np.float32))
    with pytest.raises(FaceLabError, match="code-size mismatch"):
        Gallery.from_arrays(gallery.to_arrays(), other.embed, code_size=8)
    with pytest.raises(FaceLabError, match="no embedding"):
        Gallery().enrol("x", split.test.images[:1])


def test_arrays_round_trip_and_copies_are_independent(split, embed):
    gallery = make_gallery(split, embed, people=range(5), mode="mean", k=2)
    gallery.calibrate(split.val.images[split.val.labels < 5], names_of(split.val)[:5], far=0.0)
    arrays = gallery.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    again = Gallery.from_arrays(arrays, embed, code_size=40)
    assert (again.names, again.mode, again.k, again.threshold) == (gallery.names, "mean", 2, gallery.threshold)
    faces = split.test.images[:10]
    assert [a.name for a in again.identify(faces)] == [a.name for a in gallery.identify(faces)]

    twin = copy.deepcopy(gallery)
    twin.remove(gallery.names[0])
    assert len(twin) == 4 and len(gallery) == 5 and twin.embed is gallery.embed
    uncalibrated = Gallery.from_arrays(make_gallery(split, embed, people=range(2)).to_arrays(), embed)
    assert uncalibrated.threshold == np.inf  # "name every face" survives the round trip


def test_corrupt_gallery_arrays_are_refused_with_a_message(split, embed):
    arrays = make_gallery(split, embed, people=range(3)).to_arrays()
    n = len(arrays["gallery_codes"])
    for key, bad in (("gallery_codes", np.zeros(n)), ("gallery_codes", np.array(["a"] * n)),
                     ("gallery_owners", np.array(["x"] * n)), ("gallery_owners", np.zeros((n, 2), int)),
                     ("gallery_owners", np.full(n, 7)), ("gallery_settings", np.array(["cosine"])),
                     ("gallery_numbers", np.array([1.0])), ("gallery_numbers", np.array([np.nan, 1, 64])),
                     ("gallery_numbers", np.array([1, 1, -5])), ("gallery_names", np.array([1, 2, 3]))):
        with pytest.raises(FaceLabError, match="saved gallery is corrupt"):
            Gallery.from_arrays({**arrays, key: bad}, embed)


def test_calibration_matches_a_hand_computation():
    # Two people on the unit circle; cosine distances are 1 - cos(angle).
    gallery = Gallery(metric="cosine", mode="all")
    gallery.enrol_codes("a", np.array([[1.0, 0.0]]))
    gallery.enrol_codes("b", np.array([[0.0, 1.0]]))
    angle = np.deg2rad([10.0, 30.0])
    codes = np.stack([np.cos(angle), np.sin(angle)], axis=1)  # both nearer "a"
    stranger = np.array([[-1.0, 0.2]])  # nearest is "b"
    cal = gallery.calibrate_codes(np.concatenate([codes, stranger]), ["a", "a", "zed"], far=0.0)
    # Impostor samples: each "a" face's distance to "b", and the stranger's nearest distance.
    impostors = sorted([1 - np.sin(angle[0]), 1 - np.sin(angle[1]), 1 - 0.2 / np.hypot(1, 0.2)])
    assert cal.impostors == 3 and cal.genuine == 2
    assert cal.threshold < impostors[0] and cal.threshold == pytest.approx(impostors[0])
    assert cal.tar == 1.0 and cal.far == 0.0
    cal = gallery.calibrate_codes(np.concatenate([codes, stranger]), ["a", "a", "zed"], far=0.34)
    assert cal.threshold == pytest.approx((impostors[0] + impostors[1]) / 2)
    answers = gallery.identify_codes(codes)
    assert [a.name for a in answers] == ["a", "a"]
    assert answers[0].confidence == pytest.approx(np.cos(angle[0]))


def test_calibration_describes_itself_and_flags_a_threshold_that_names_few_known_faces():
    cal = Calibration(threshold=0.1234, far_target=0.01, far=0.0, tar=0.3, genuine=20, impostors=30)
    assert cal.describe() == ("Calibrated threshold 0.1234: set for 1% false accepts, it accepted 0% of 30 faces of "
                              "people the gallery does not know and named 30% of 20 validation faces of known people.")
    assert cal.names_few_known
    assert not dataclasses.replace(cal, tar=0.85).names_few_known
    no_genuine = dataclasses.replace(cal, tar=math.nan, genuine=0)
    assert not no_genuine.names_few_known and "validation faces of known people" not in no_genuine.describe()
    # Nothing measured the known side: said, with what to do if known people are turned away.
    assert no_genuine.describe().endswith("how many known faces it names was not measured: if it turns known people "
                                          "away, raise the distance.")
    assert "train it for more epochs" in cal.few_known_advice("ae-metric") and "30%" in cal.few_known_advice("ae-metric")
    assert "train `ae-metric`" in cal.few_known_advice("ae-conv")


def test_calibration_on_strangers_only_ignores_enrolled_impostors():
    gallery = Gallery(metric="cosine", mode="all")
    gallery.enrol_codes("a", np.array([[1.0, 0.0]]))
    gallery.enrol_codes("b", np.array([[0.0, 1.0]]))
    angle = np.deg2rad([10.0, 30.0])
    codes = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    strangers = np.array([[-1.0, 0.2], [0.6, 0.8]])  # nearest: "b" at 1 - 0.2/|.|, "b" at 1 - 0.8
    cal = gallery.calibrate_codes(np.concatenate([codes, strangers]), ["a", "a", "x", "y"], far=0.0,
                                  impostors="unknown")
    assert cal.impostors == 2 and cal.genuine == 2
    assert cal.threshold < 0.2 and cal.threshold == pytest.approx(0.2)
    assert cal.tar == 1.0 and cal.far == 0.0
    with pytest.raises(FaceLabError, match="impostors"):
        gallery.calibrate_codes(codes, ["a", "a"], impostors="some")
    with pytest.raises(FaceLabError, match="cannot calibrate"):
        gallery.calibrate_codes(codes, ["a", "a"], impostors="unknown")


def test_few_impostors_get_a_normal_tail_not_just_the_closest_one():
    gallery = Gallery(metric="euclidean", mode="all")
    gallery.enrol_codes("a", np.zeros((1, 1)))
    imp = np.linspace(1.0, 2.0, 20)  # 20 strangers: too few to see a 1% tail
    cal = gallery.calibrate_codes(np.concatenate([[[0.1]], imp[:, None]]), ["a"] + [f"s{i}" for i in range(20)],
                                  far=0.01, impostors="unknown")
    assert cal.threshold == pytest.approx(imp.mean() - 2.3263 * imp.std(ddof=1), abs=1e-3)
    assert cal.threshold < 1.0 and cal.far == 0.0 and cal.tar == 1.0
    cal = gallery.calibrate_codes(np.concatenate([[[0.1]], imp[:, None]]), ["a"] + [f"s{i}" for i in range(20)],
                                  far=0.1, impostors="unknown")  # 2 of 20 may pass: the empirical rule
    assert cal.threshold == pytest.approx((imp[1] + imp[2]) / 2)


def test_a_normal_tail_below_zero_falls_back_to_the_closest_impostor():
    # Skewed impostor distances (most very close, a few far): mean - 2.33 sd is negative, which as a
    # threshold would call every face unknown.
    gallery = Gallery(metric="euclidean", mode="all")
    gallery.enrol_codes("a", np.zeros((1, 1)))
    imp = np.concatenate([np.full(18, 0.01), [5.0, 6.0]])
    assert imp.mean() - 2.3263 * imp.std(ddof=1) < 0
    cal = gallery.calibrate_codes(np.concatenate([[[0.001]], imp[:, None]]),
                                  ["a"] + [f"s{i}" for i in range(20)], far=0.01, impostors="unknown")
    assert 0.001 < cal.threshold < 0.01 and cal.tar == 1.0 and cal.far == 0.0


def test_threshold_choices_offer_the_calibrated_value_in_fine_steps():
    from facelab.gallery import threshold_choices

    # A few-epoch model calibrates near 0.004: a 0-2 slider in steps of 0.01 showed it as 0.00 and lost it.
    for calibrated in (0.004, 0.1855):
        choices, start = threshold_choices(calibrated, 2.0)
        assert start == calibrated and calibrated in choices and choices[0] == 0.0 and choices[-1] == 2.0
        around = [v for v in choices if calibrated / 8 <= v <= 2.0]
        assert max(b / a for a, b in zip(around, around[1:])) < 1.1  # no step over 10% from 1/8 of it up to 2
    assert threshold_choices(float("inf"), 2.0)[1] == 2.0  # uncalibrated: names everyone at first
    assert threshold_choices(0.0, 2.0)[1] == 0.0
    assert threshold_choices(73.2, 50.0)[0][-1] == 73.2  # a euclidean threshold above the usual top stays reachable
