"""Keras 3 model builders: pure functions of their hyperparameters returning uncompiled models.

`facelab.models.gru` holds the sequence classifiers (seed GRU, CNN->GRU) and the `seed` RNN cell;
`facelab.models.autoencoder` the autoencoders. Importing a builder module registers its custom layers
so saved models load in Keras safe mode.
"""
