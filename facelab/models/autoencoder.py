"""Autoencoder builders: pure functions of their hyperparameters returning uncompiled Keras 3 models.

Every autoencoder is `Model(face) -> reconstruction` made of two named sub-models, `encoder`
(face (S, S, 1) -> code (D,)) and `decoder` (code -> face), so that codes can be read and decoded on
their own after a `.keras` round trip. The metric variant adds an `identity` head on the code and
returns a dict `{"recon": ..., "identity": ...}`. Only `keras` and `keras.ops` are used, so the
models run on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from facelab.errors import FaceLabError

RECON = "recon"  # output name of the reconstruction
IDENTITY = "identity"  # output name of the person-classification head (metric variant)


def build_dense_encoder(image_size: int = 64, encoding_dim: int = 64, hidden_units: int = 0,
                        dropout: float = 0.0, code_activation: str = "relu", center: bool = False) -> keras.Model:
    """Flatten -> [Dense(hidden_units, relu)] -> Dense(encoding_dim): (S, S, 1) -> (D,).

    `center` feeds pixels - 0.5 instead of pixels: the same function class (the shift folds into the
    first bias), but zero-centred inputs keep relu code units from dying early in training."""
    _check(image_size, encoding_dim)
    face = keras.Input((image_size, image_size, 1), name="face")
    x = layers.Flatten(name="flatten")(face)  # (S*S,)
    if center:
        x = layers.Rescaling(1.0, offset=-0.5, name="center")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="enc_dropout")(x)
    if hidden_units > 0:
        x = layers.Dense(hidden_units, activation="relu", name="enc_hidden")(x)
    code = layers.Dense(encoding_dim, activation=code_activation, name="code")(x)  # (D,)
    return keras.Model(face, code, name="encoder")


def build_dense_decoder(image_size: int = 64, encoding_dim: int = 64, hidden_units: int = 0) -> keras.Model:
    """[Dense(hidden_units, relu)] -> Dense(S*S, sigmoid) -> reshape: (D,) -> (S, S, 1)."""
    _check(image_size, encoding_dim)
    code_in = keras.Input((encoding_dim,), name="code_in")
    y = code_in
    if hidden_units > 0:
        y = layers.Dense(hidden_units, activation="relu", name="dec_hidden")(y)
    y = layers.Dense(image_size * image_size, activation="sigmoid", name="pixels")(y)  # (S*S,)
    recon = layers.Reshape((image_size, image_size, 1), name="face_out")(y)
    return keras.Model(code_in, recon, name="decoder")


def build_conv_encoder(image_size: int = 64, encoding_dim: int = 64, blocks: int = 3, filters: int = 32,
                       dropout: float = 0.0, code_activation: str = "linear", code_norm: bool = False) -> keras.Model:
    """Conv(3x3, relu) + max-pool blocks, filters doubling per block, then Dense to the (D,) code
    (batch-normalised with `code_norm`)."""
    _check(image_size, encoding_dim, blocks)
    face = keras.Input((image_size, image_size, 1), name="face")
    x = face
    for i in range(blocks):
        x = layers.Conv2D(filters * 2**i, 3, padding="same", activation="relu", name=f"enc_conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"enc_pool{i}")(x)  # side halves: S / 2**(i+1)
    x = layers.Flatten(name="flatten")(x)  # (S/2**blocks)**2 * filters*2**(blocks-1)
    if dropout > 0:
        x = layers.Dropout(dropout, name="enc_dropout")(x)
    if code_norm:
        # Without it the codes share one large offset, so early in training every face's code points the
        # same way: cosines are all ~1 and the identity head has nothing to separate.
        x = layers.Dense(encoding_dim, activation=code_activation, name="code_dense")(x)
        code = layers.BatchNormalization(momentum=0.9, name="code")(x)  # (D,), centred per unit
    else:
        code = layers.Dense(encoding_dim, activation=code_activation, name="code")(x)  # (D,)
    return keras.Model(face, code, name="encoder")


def build_conv_decoder(image_size: int = 64, encoding_dim: int = 64, blocks: int = 3, filters: int = 32) -> keras.Model:
    """The mirror of `build_conv_encoder`: Dense to a small feature map, stride-2 transposed convs, sigmoid."""
    _check(image_size, encoding_dim, blocks)
    side = image_size // 2**blocks
    top = filters * 2 ** (blocks - 1)
    code_in = keras.Input((encoding_dim,), name="code_in")
    y = layers.Dense(side * side * top, activation="relu", name="dec_dense")(code_in)
    y = layers.Reshape((side, side, top), name="dec_reshape")(y)  # (S/2**blocks, S/2**blocks, top)
    for i in reversed(range(blocks)):
        y = layers.Conv2DTranspose(filters * 2**i, 3, strides=2, padding="same", activation="relu",
                                   name=f"dec_deconv{i}")(y)  # side doubles
    recon = layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="face_out")(y)  # (S, S, 1)
    return keras.Model(code_in, recon, name="decoder")


def join(encoder: keras.Model, decoder: keras.Model, n_people: int = 0, name: str = "autoencoder") -> keras.Model:
    """face -> encoder -> code -> decoder -> reconstruction; with `n_people` > 0 also an `identity` head.

    With the head the model returns `{"recon": (S, S, 1), "identity": (n_people,)}`: the cosine of the
    unit-length code with each person's unit-length class vector. Train `identity` with
    `cosine_margin_loss` (CosFace), so that people are separated by the code's direction, the very
    quantity the cosine gallery compares; `softmax(scale * identity)` gives class probabilities.
    """
    face = keras.Input(encoder.input_shape[1:], name="face")
    code = encoder(face)
    recon = decoder(code)
    if n_people <= 0:
        return keras.Model(face, recon, name=name)
    if n_people < 2:
        raise FaceLabError(f"the identity head needs at least 2 people to separate, got {n_people}")
    unit = layers.UnitNormalization(name="head_unit")(code)  # (D,), |x| = 1
    # UnitNorm on the kernel's columns keeps each class vector unit-length after every update.
    cosine = layers.Dense(n_people, use_bias=False, kernel_constraint=keras.constraints.UnitNorm(axis=0),
                          name=IDENTITY)(unit)  # (P,) cosines in [-1, 1]
    return keras.Model(face, {RECON: recon, IDENTITY: cosine}, name=name)


def cosine_margin_loss(scale: float = 16.0, margin: float = 0.2):
    """Large-margin cosine loss (CosFace, Wang et al. 2018) on (N, P) cosines and (N,) integer labels.

    Cross-entropy of `scale * (cos - margin * onehot)`: the true person's cosine must beat the others
    by `margin`, which leaves a gap between people that an unknown-face threshold can use.
    """

    def cosface(y_true, cosines):
        onehot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(cosines)[-1])
        logits = scale * (cosines - margin * onehot)
        return keras.losses.categorical_crossentropy(onehot, logits, from_logits=True)

    return cosface


def encoder_of(model: keras.Model) -> keras.Model:
    """The `encoder` sub-model of any autoencoder built here (also after loading from a .keras file)."""
    return model.get_layer("encoder")


def decoder_of(model: keras.Model) -> keras.Model:
    """The `decoder` sub-model of any autoencoder built here."""
    return model.get_layer("decoder")


def _check(image_size: int, encoding_dim: int, blocks: int = 0) -> None:
    if encoding_dim < 1:
        raise FaceLabError(f"encoding size must be at least 1, got {encoding_dim}")
    if blocks < 0 or image_size < 8:
        raise FaceLabError(f"face size {image_size} is too small (need at least 8 pixels)")
    if blocks and image_size % 2**blocks:
        raise FaceLabError(f"face size {image_size} must be divisible by 2**blocks = {2**blocks} "
                           f"for a convolutional autoencoder with {blocks} blocks")
