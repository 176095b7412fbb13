"""GRU model builders: shapes, the seed architecture, gates of each cell, and the seed cell equal to LSTM."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from facelab.errors import FaceLabError
from facelab.models.gru import (
    EMBEDDING,
    SeedCell,
    Standardize,
    build_cnn_gru,
    build_seed_gru,
    embedding_model,
    recurrent_layer,
    seed_weights_from_lstm,
)


def _faces(n=3, size=64, seed=0):
    return np.random.default_rng(seed).random((n, size, size), dtype=np.float32)


def test_seed_gru_is_the_seed_architecture():
    model = build_seed_gru(40)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Standardize", "GRU", "GRU", "Identity", "Dense"]
    gru1, gru2 = model.get_layer("gru_1"), model.get_layer("gru_2")
    assert gru1.units == gru2.units == 128 and gru1.return_sequences and not gru2.return_sequences
    assert model.input_shape == (None, 64, 64)  # 64 time steps of 64 features
    assert gru1.output.shape == (None, 64, 128)
    probs = model.predict_on_batch(_faces())
    assert probs.shape == (3, 40)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    # GRU gates: update z, reset r, candidate h -> kernels of 3 x units
    kernel, recurrent, _ = gru1.cell.weights
    assert kernel.shape == (64, 3 * 128) and recurrent.shape == (128, 3 * 128)
    # without standardisation nothing but the seed's layers remain
    assert "standardize" not in [layer.name for layer in build_seed_gru(40, standardize=False).layers]


def test_cnn_gru_shapes_and_embedding():
    model = build_cnn_gru(7, filters=(16, 32), units=32, bidirectional=True)
    assert model.get_layer("rows").output.shape == (None, 16, 16 * 32)  # 16 rows of the 16x16x32 map
    assert model.predict_on_batch(_faces()).shape == (3, 7)
    emb = embedding_model(model)
    assert emb.predict_on_batch(_faces()).shape == (3, 64)  # 2 x 32 (bidirectional)
    assert model.get_layer(EMBEDDING).output.shape == (None, 64)
    with pytest.raises(FaceLabError, match="divisible"):
        build_cnn_gru(7, image_size=60, filters=(16, 32, 64))


@pytest.mark.parametrize("cell, gates", [("gru", 3), ("lstm", 4), ("seed", 4)])
def test_cells_and_gates(cell, gates):
    model = build_seed_gru(5, image_size=16, units=8, n_layers=1, cell=cell, bidirectional=True)
    assert model.predict_on_batch(_faces(2, 16)).shape == (2, 5)
    layer = recurrent_layer(cell, 8, return_sequences=False, name="r")
    layer(np.zeros((1, 4, 6), np.float32))
    n_weights = sum(int(np.prod(w.shape)) for w in layer.weights)
    # each gate (and the candidate) has input weights, recurrent weights and a bias (GRU: two biases in Keras)
    expected = gates * (6 * 8 + 8 * 8 + 8) + (3 * 8 if cell == "gru" else 0)
    assert n_weights == expected
    with pytest.raises(FaceLabError, match="cell"):
        recurrent_layer("vanilla", 8, False, "x")


def test_seed_cell_equals_keras_lstm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 9, 6)).astype(np.float32)
    keras.utils.set_random_seed(1)
    lstm = keras.layers.LSTM(5, return_sequences=True, bias_initializer="random_normal")
    expected = np.asarray(lstm(x))
    seed = keras.layers.RNN(SeedCell(5), return_sequences=True)
    seed(x)
    names = [w.name for w in seed.weights]
    assert names == ["W_z", "b_z", "W_f", "b_f", "W_o", "b_o", "W_h", "b_h"]
    assert seed.weights[0].shape == (5 + 6, 5)  # W_z acts on [h_{t-1}, x_t]
    seed.set_weights(seed_weights_from_lstm(lstm))
    np.testing.assert_allclose(np.asarray(seed(x)), expected, atol=1e-5)


def test_seed_cell_follows_its_equations_for_one_step():
    """One step by hand in NumPy: c = f*c0 + z*tanh(W_h[h0,x]+b_h), h = o*tanh(c)."""
    rng = np.random.default_rng(2)
    cell = SeedCell(3)
    x, h0, c0 = (rng.normal(size=(2, d)).astype(np.float32) for d in (4, 3, 3))
    cell.build((2, 4))
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in cell.weights]
    cell.set_weights(weights)
    h, (h_state, c) = cell(x, [h0, c0])
    w = dict(zip(["W_z", "b_z", "W_f", "b_f", "W_o", "b_o", "W_h", "b_h"], weights))
    hx = np.concatenate([h0, x], axis=1)
    sig = lambda a: 1 / (1 + np.exp(-a))
    z, f, o = (sig(hx @ w[f"W_{g}"] + w[f"b_{g}"]) for g in "zfo")
    c_ref = f * c0 + z * np.tanh(hx @ w["W_h"] + w["b_h"])
    np.testing.assert_allclose(np.asarray(c), c_ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h), o * np.tanh(c_ref), atol=1e-5)
    np.testing.assert_allclose(np.asarray(h_state), np.asarray(h))


def test_standardize_and_round_trip_in_safe_mode(tmp_path):
    out = np.asarray(Standardize()(_faces(2)))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-2)
    model = build_seed_gru(4, image_size=16, units=8, n_layers=1, cell="seed")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(_faces(2, 16)), model.predict_on_batch(_faces(2, 16)),
                               rtol=1e-5)


def test_the_shown_seed_cell_equations_are_the_lstms_with_the_input_gate_renamed():
    from facelab.classifier import LSTM_EQUATIONS, SEED_CELL_EQUATIONS

    renamed = SEED_CELL_EQUATIONS.replace("z_t", "i_t").replace("_z", "_i").replace("W_h", "W_c").replace("b_h", "b_c")
    assert renamed == LSTM_EQUATIONS
    assert r"c_t &= f_t \odot c_{t-1} + z_t \odot \tilde c_t" in SEED_CELL_EQUATIONS  # the seed's cell-state update
