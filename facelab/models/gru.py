"""Sequence classifiers that read a face row by row: the seed GRU, the CNN->GRU hybrid, and the `seed` cell.

Shapes: a face batch is (N, S, S) float32 in [0, 1]. The seed GRU treats the S rows as S time steps of S
features; the hybrid first runs a small conv stack to an (S/4, S/4, C) feature map whose S/4 rows become
time steps of S/4 * C features. Every model ends `... -> embedding (Identity) -> probs (Dense softmax)`,
so the embedding (the layer before the softmax) can be read out for open-set recognition.
Only `keras` and `keras.ops` are used, so the models run on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from facelab.errors import FaceLabError

EMBEDDING = "embedding"  # name of the layer before the softmax
PROBS = "probs"  # name of the softmax output

@keras.saving.register_keras_serializable(package="facelab")
class SeedCell(layers.Layer):
    """The seed document's "GRU" cell: update gate z, forget gate f, output gate o and a cell state c.

    Each gate has one weight matrix over the concatenation [h_{t-1}, x_t], shape (units + features, units),
    exactly as the equations in `facelab.classifier.SEED_CELL_EQUATIONS` write it. This is an LSTM with the input gate
    called z: with the same weights it equals `keras.layers.LSTM` (see `seed_weights_from_lstm`).
    """

    GATES = ("z", "f", "o", "h")

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]  # [h, c], the order keras.layers.LSTM uses
        self.output_size = units

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        self.w = {}
        self.b = {}
        for gate in self.GATES:
            self.w[gate] = self.add_weight(shape=(self.units + features, self.units), name=f"W_{gate}",
                                           initializer="glorot_uniform")
            # A forget-gate bias of 1 keeps memory flowing early in training (Jozefowicz et al. 2015).
            self.b[gate] = self.add_weight(shape=(self.units,), name=f"b_{gate}",
                                           initializer="ones" if gate == "f" else "zeros")

    def call(self, inputs, states, training=None):
        h_prev, c_prev = states[0], states[1]
        hx = ops.concatenate([h_prev, inputs], axis=-1)  # [h_{t-1}, x_t]: (N, units + features)
        z = ops.sigmoid(ops.matmul(hx, self.w["z"]) + self.b["z"])
        f = ops.sigmoid(ops.matmul(hx, self.w["f"]) + self.b["f"])
        o = ops.sigmoid(ops.matmul(hx, self.w["o"]) + self.b["o"])
        c = f * c_prev + z * ops.tanh(ops.matmul(hx, self.w["h"]) + self.b["h"])
        h = o * ops.tanh(c)
        return h, [h, c]

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


def seed_weights_from_lstm(lstm: layers.LSTM) -> list:
    """An LSTM layer's weights rearranged for a `SeedCell` (W_z, b_z, W_f, b_f, W_o, b_o, W_h, b_h).

    Keras' LSTM keeps kernel (features, 4u), recurrent kernel (u, 4u) and bias (4u) in gate order i, f, c, o;
    the seed cell's z is LSTM's i and its W_h is LSTM's candidate (c) weights.
    """
    kernel, recurrent, bias = (ops.convert_to_numpy(w) for w in lstm.cell.weights)
    u = recurrent.shape[0]
    index = {"z": 0, "f": 1, "h": 2, "o": 3}
    out = []
    for gate in SeedCell.GATES:
        s = slice(index[gate] * u, (index[gate] + 1) * u)
        out += [ops.convert_to_numpy(ops.concatenate([recurrent[:, s], kernel[:, s]], axis=0)), bias[s]]
    return out


@keras.saving.register_keras_serializable(package="facelab")
class Standardize(layers.Layer):
    """Per-image standardisation: zero mean, unit variance over each face (a lighting-invariant input)."""

    def __init__(self, axes: tuple[int, ...] = (1, 2), epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.axes = tuple(axes)
        self.epsilon = epsilon

    def call(self, x):
        mean = ops.mean(x, axis=self.axes, keepdims=True)
        std = ops.std(x, axis=self.axes, keepdims=True)
        return (x - mean) / (std + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "axes": list(self.axes), "epsilon": self.epsilon}


def recurrent_layer(cell: str, units: int, return_sequences: bool, name: str, seed: int | None = None) -> layers.Layer:
    """One recurrent layer of the given cell type (`gru`, `lstm` or the custom `seed` cell)."""
    if cell == "gru":
        return layers.GRU(units, return_sequences=return_sequences, name=name, seed=seed)
    if cell == "lstm":
        return layers.LSTM(units, return_sequences=return_sequences, name=name, seed=seed)
    if cell == "seed":
        return layers.RNN(SeedCell(units), return_sequences=return_sequences, name=name)
    raise FaceLabError(f"unknown cell type {cell!r}")  # configs check their cell against classifier.CELLS


def _recurrent_stack(x, cell: str, units: int, n_layers: int, bidirectional: bool, dropout: float):
    """n_layers recurrent layers over a (N, T, F) sequence -> (N, units or 2*units)."""
    for i in range(n_layers):
        last = i == n_layers - 1
        rnn = recurrent_layer(cell, units, return_sequences=not last, name=f"{cell}_{i + 1}")
        if bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bi_{cell}_{i + 1}")
        x = rnn(x)  # (N, T, U) for inner layers, (N, U) for the last
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout_{i + 1}")(x)
    return x


def _check(image_size: int, people: int, units: int, n_layers: int) -> None:
    if people < 2:
        raise FaceLabError(f"a classifier needs at least 2 people, got {people}")
    if image_size < 8 or units < 1 or n_layers < 1:
        raise FaceLabError("image_size must be >= 8 and units, layers >= 1")


def build_seed_gru(people: int, image_size: int = 64, units: int = 128, n_layers: int = 2, cell: str = "gru",
                   bidirectional: bool = False, dropout: float = 0.0, standardize: bool = True) -> keras.Model:
    """The seed network: rows as time steps, GRU(128, sequences) -> GRU(128) -> Dense(people, softmax).

    With the defaults this is the seed's architecture; `standardize` adds only a weightless per-image
    standardisation of the input, which is preprocessing (the recipe), not a change of the network.
    (N, S, S) -> (N, people).
    """
    _check(image_size, people, units, n_layers)
    face = keras.Input((image_size, image_size), name="face")  # (N, S rows = time, S columns = features)
    x = Standardize(name="standardize")(face) if standardize else face
    x = _recurrent_stack(x, cell, units, n_layers, bidirectional, dropout)
    x = layers.Identity(name=EMBEDDING)(x)
    probs = layers.Dense(people, activation="softmax", dtype="float32", name=PROBS)(x)  # float32 under mixed precision
    return keras.Model(face, probs, name="seed_gru")


def build_cnn_gru(people: int, image_size: int = 64, filters: tuple[int, ...] = (32, 64), units: int = 128,
                  n_layers: int = 1, cell: str = "gru", bidirectional: bool = True, dropout: float = 0.3,
                  dense_units: int = 0, standardize: bool = True) -> keras.Model:
    """The hybrid: conv blocks (two 3x3 convs, batch norm, ReLU, 2x2 max-pool each) -> rows as a sequence -> RNN.

    (N, S, S) -> conv stack -> (N, S/2^B, S/2^B, C) -> (N, T = S/2^B rows, S/2^B * C) -> RNN -> embedding
    -> Dense(people, softmax).
    """
    _check(image_size, people, units, n_layers)
    if not filters or image_size % (2 ** len(filters)):
        raise FaceLabError(f"image_size {image_size} must be divisible by 2^{len(filters)} (one pool per conv block)")
    face = keras.Input((image_size, image_size), name="face")
    x = layers.Reshape((image_size, image_size, 1), name="channel")(face)  # (N, S, S, 1)
    if standardize:
        x = Standardize(name="standardize")(x)
    for b, f in enumerate(filters, start=1):
        for j in (1, 2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{b}_{j}")(x)
            # momentum 0.9: with ~12 steps per epoch the default 0.99 leaves inference statistics stale for
            # dozens of epochs, and validation accuracy lags far behind training accuracy.
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{b}_{j}")(x)
            x = layers.Activation("relu", name=f"relu{b}_{j}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{b}")(x)
    side = image_size // 2 ** len(filters)
    x = layers.Reshape((side, side * filters[-1]), name="rows")(x)  # (N, T rows, features per row)
    if dropout > 0:
        x = layers.SpatialDropout1D(dropout, name="row_dropout")(x)
    x = _recurrent_stack(x, cell, units, n_layers, bidirectional, dropout)
    if dense_units > 0:
        x = layers.Dense(dense_units, activation="relu", name="dense")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="dense_dropout")(x)
    x = layers.Identity(name=EMBEDDING)(x)
    probs = layers.Dense(people, activation="softmax", dtype="float32", name=PROBS)(x)  # float32 under mixed precision
    return keras.Model(face, probs, name="cnn_gru")


def classifier_problem(model: keras.Model, image_size: int, people: int) -> str | None:
    """Why `model` cannot be a classifier of (N, image_size, image_size) faces into `people`, or None."""
    layer_names = {layer.name for layer in model.layers}
    if EMBEDDING not in layer_names or PROBS not in layer_names:
        return f"the saved model is not a FaceLab classifier (it has no {EMBEDDING!r} and {PROBS!r} layers)"
    if len(model.inputs) != 1 or tuple(model.inputs[0].shape[1:]) != (image_size, image_size):
        return f"the saved model reads {[tuple(i.shape[1:]) for i in model.inputs]}, not {image_size}x{image_size} faces"
    outputs = model.outputs[0].shape[-1]
    if len(model.outputs) != 1 or outputs != people:
        return f"the bundle lists {people} people but the model has {outputs} outputs"
    return None


def embedding_model(model: keras.Model) -> keras.Model:
    """The sub-model from the face to the embedding layer (the input of the softmax)."""
    return keras.Model(model.inputs, model.get_layer(EMBEDDING).output, name=f"{model.name}_embedding")
