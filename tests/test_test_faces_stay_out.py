"""Test faces never steer training, model selection or calibration: swapping them for noise changes nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facelab.data import DataSplit, split_dataset
from facelab.registry import config_for, create_model

QUICK = {  # a few epochs of small networks: the point is the comparison, not the accuracy
    "gru": {"units": 16, "epochs": 3, "warmup_epochs": 0, "augment": False},
    "ae-metric": {"filters": 4, "epochs": 3, "augment": False},
}


@pytest.mark.parametrize("kind", sorted(QUICK))
def test_noise_for_test_faces_trains_the_same_model(kind, olivetti):
    split = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)
    rng = np.random.default_rng(7)
    test = split.test
    noise = dataclasses.replace(test, images=rng.random(test.images.shape, dtype=np.float32),
                                labels=np.roll(test.labels, 7))
    config = config_for(kind, **QUICK[kind])
    real = create_model(config).fit(split)
    swapped = create_model(config).fit(DataSplit(split.train, split.val, noise))

    assert real.best_epoch_ == swapped.best_epoch_
    for key in real.history_:
        if key != "seconds":
            np.testing.assert_allclose(real.history_[key], swapped.history_[key], rtol=1e-5, err_msg=key)
    for a, b in zip(real.keras_model_.get_weights(), swapped.keras_model_.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if kind == "ae-metric":
        assert real.gallery_.threshold == pytest.approx(swapped.gallery_.threshold, rel=1e-5)
        assert real.gallery_.names == swapped.gallery_.names
