"""Autoencoders as face embeddings: `AEConfig` presets and the `FaceAutoencoder` estimator.

Kinds: "ae-dense" (the seed network, trained exactly as the seed did), "ae-conv" (convolutional,
plain reconstruction) and "ae-metric" (convolutional plus an identity head on the code, so that
codes separate people and not just pixels). After `fit` the bottleneck codes of the training split
are enrolled in a `Gallery` whose unknown-face threshold is calibrated on "calibration strangers":
training people kept out of training (enrolled afterwards, and trained on in a short refit when the
config asks), or, with too few people, the validation split. Training goes through the shared
`facelab.training.fit_keras`; saving through `facelab.storage`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelab import FACE_SIZE
from facelab.data import DataSplit, FaceDataset
from facelab.errors import BadInputError, FaceLabError
from facelab.gallery import METRICS, MODES, Gallery, unit_length
from facelab.preprocess import AugmentConfig, as_faces, augment_faces, detector_views
from facelab.reconstruction import interpolate_faces, mse_per_image, psnr_per_image, ssim_per_image
from facelab.registry import AUTOENCODER_KINDS
from facelab.training import StopRequest, TrainConfig, TrainingProgress

log = logging.getLogger(__name__)

# The recommended way to train the seed's dense network (same layers; `config_for("ae-dense", **DENSE_RECIPE)`):
# the seed's 50 full-batch steps on uncentred pixels leave ~85% of the relu code dead; centred inputs
# and 10 small steps per epoch keep 86-92% of it alive. Chosen on validation faces (bench seeds 0, 1).
DENSE_RECIPE = {"center_input": True, "batch_size": 16, "epochs": 200, "lr_schedule": "cosine"}
ProgressFn = Callable[[TrainingProgress], None]


@dataclass(frozen=True)
class AEConfig:
    """Architecture, code, gallery and training settings of an autoencoder (`AEConfig.preset(kind)`)."""

    kind: str = field(default="ae-conv", metadata={"help": "model kind", "choices": AUTOENCODER_KINDS})
    image_size: int = field(default=FACE_SIZE, metadata={"help": "face side in pixels (conv: divisible by "
                                                                 "2**blocks)", "min": 16, "max": 256})
    encoding_dim: int = field(default=64, metadata={"help": "code (embedding) size", "min": 2, "max": 1024})
    blocks: int = field(default=3, metadata={"help": "conv depth: conv+pool blocks (ae-conv, ae-metric)",
                                             "min": 1, "max": 5})
    filters: int = field(default=16, metadata={"help": "conv width: filters of the first block, doubling "
                                                       "per block", "min": 4, "max": 128})
    hidden_units: int = field(default=0, metadata={"help": "dense depth: a hidden layer of this width on each "
                                                           "side (ae-dense); 0 = the seed's single layer",
                                                   "min": 0, "max": 4096})
    code_activation: str = field(default="linear", metadata={"help": "activation of the code layer (the seed: "
                                                                      "relu)", "choices": ("linear", "relu")})
    center_input: bool = field(default=False, metadata={"help": "feed pixels - 0.5 to the dense encoder (same "
                                                                "network up to its first bias; keeps relu "
                                                                "codes alive) (ae-dense)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout before the code layer", "min": 0.0, "max": 0.8})
    code_norm: bool = field(default=False, metadata={"help": "batch-normalise the code (conv kinds): centred codes "
                                                             "let the cosine head and gallery see how faces differ"})
    noise_std: float = field(default=0.0, metadata={"help": "denoising: Gaussian noise added to inputs while "
                                                            "training (targets stay clean)", "min": 0.0, "max": 0.5})
    metric_weight: float = field(default=0.0, metadata={"help": "weight of the metric-learning (large-margin "
                                                                "cosine) loss on the code next to "
                                                                "reconstruction; 0 = plain reconstruction",
                                                        "min": 0.0, "max": 10.0})
    head_scale: float = field(default=16.0, metadata={"help": "identity head: softmax scale of the cosines",
                                                      "min": 1.0, "max": 64.0})
    head_margin: float = field(default=0.2, metadata={"help": "identity head: cosine margin between people "
                                                              "(CosFace); 0 = plain cosine softmax",
                                                      "min": 0.0, "max": 0.6})
    normalize_embedding: bool = field(default=True, metadata={"help": "unit-length embeddings (cosine geometry)"})
    flip_average: bool = field(default=True, metadata={"help": "embedding = mean of the codes of the face and "
                                                               "its mirror image (not the seed)"})
    gallery_mode: str = field(default="all", metadata={"help": "gallery keeps all codes per person or their mean",
                                                       "choices": MODES})
    gallery_metric: str = field(default="cosine", metadata={"help": "gallery distance", "choices": METRICS})
    gallery_k: int = field(default=1, metadata={"help": "neighbours per person (mode 'all')", "min": 1, "max": 20})
    far: float = field(default=0.01, metadata={"help": "target false-accept rate for the unknown-face threshold "
                                                       "(calibrated without test faces)", "min": 0.0, "max": 0.5})
    calibration_people: float = field(default=0.2, metadata={"help": "share of the training people kept out of "
                                                                     "training as calibration strangers for the "
                                                                     "unknown-face threshold, enrolled afterwards; "
                                                                     "0 = calibrate on validation faces only",
                                                             "min": 0.0, "max": 0.5})
    refit_share: float = field(default=0.0, metadata={"help": "after the threshold is calibrated, train this share of "
                                                              "the epochs more on everyone, the calibration strangers "
                                                              "too, so they are known as well as the rest (needs the "
                                                              "metric term and calibration strangers); 0 = off",
                                                      "min": 0.0, "max": 1.0})
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.kind not in AUTOENCODER_KINDS:
            raise BadInputError(f"unknown autoencoder kind {self.kind!r}; choose one of {', '.join(AUTOENCODER_KINDS)}")
        if self.gallery_mode not in MODES or self.gallery_metric not in METRICS:
            raise BadInputError(f"gallery_mode must be one of {MODES} and gallery_metric one of {METRICS}")
        if self.kind != "ae-dense" and self.image_size % 2**self.blocks:
            raise BadInputError(f"image_size {self.image_size} must be divisible by 2**blocks = {2**self.blocks}")

    def unused_fields(self) -> tuple[str, ...]:
        """Fields this kind's network does not read (the dense and the conv layers' settings of the other)."""
        return ("blocks", "filters", "code_norm") if self.kind == "ae-dense" else ("hidden_units", "center_input")

    @property
    def refit_epochs(self) -> int:
        """Epochs of the refit on everyone after calibration (`refit_share` of the epochs, at least 1; 0 = off)."""
        return max(1, round(self.refit_share * self.train.epochs)) if self.refit_share > 0 else 0

    @property
    def head(self) -> bool:
        """Whether the identity head (the supervised term on the code) is trained."""
        return self.metric_weight > 0

    @classmethod
    def preset(cls, kind: str) -> AEConfig:
        """The recommended settings of a kind; `ae-dense` is exactly the seed (Adam 1e-3, batch 256, 50 epochs)."""
        if kind == "ae-dense":
            # The seed: no augmentation, no clipping, constant learning rate, relu code, every training
            # face used (no calibration strangers). DENSE_RECIPE trains the same network far better.
            return cls(kind=kind, code_activation="relu", calibration_people=0.0, flip_average=False,
                       train=TrainConfig(epochs=50, batch_size=256, learning_rate=1e-3, clipnorm=0.0,
                                         lr_schedule="constant", augment=False))
        if kind == "ae-conv":
            # Every training person is trained on: keeping 20% out as calibration strangers cost 1-NN accuracy on
            # validation faces (bench split seeds 0 and 1: 58.8% with them, 73.8% without). With no identity head
            # the trained people are not pushed apart, so their validation faces give a fair threshold.
            return cls(kind=kind, calibration_people=0.0, train=TrainConfig(epochs=60, batch_size=32, learning_rate=1e-3,
                                                    lr_schedule="cosine", augment=True))
        if kind == "ae-metric":
            # Chosen on validation faces only (Olivetti, bench split seeds 0 and 1: train on 4 faces per person,
            # 1-NN of the 5th against them): margin 0.3 / 90 epochs 97.5% and 95.0%, margin 0.2 / 60 epochs
            # 95.0% and 92.5%. No test face was looked at. For unknown faces (6 of the training side's people kept
            # out as strangers, 3 folds x seeds 0-1, true accepts at the strictest stranger): margin 0.3 alone 83%; metric
            # weight 3 84%, head scale 30 / margin 0.35 82%, 32 filters 84%; T-norm or nearest/second-nearest
            # scores, fusing with LBP histograms, or the CNN->GRU classifier's embedding (74%) did not raise it either.
            # Batch norm on the code (same folds, 144 validation faces and 180 stranger faces): rank-1 93.8% ->
            # 97.2%, true accepts at 1% false accepts 82.6% -> 85.4% (batch norm in the conv blocks instead: 93.8%,
            # 84.7%; both: 93.8%, 86.1%). With it, margin 0.4 88.9% (rank-1 97.2%); margin 0.5 87.5%, margin 0.4 with
            # scale 24 83.3%, metric weight 3 86.1%, a 128-number code 86.1%, 32 filters 85.4%, 150 epochs 88.9% (a tie
            # at 1.7x the time; rank-1 98.6%). On session 6's bench-like folds (24 known people, this preset keeping
            # 20% of them out, 144 genuine and 180 stranger faces; plain 84.0%): codes whitened by the within-person
            # spread (WCCN, shrinkage 0.1-0.8) 78.5-81.9%, an LDA projection fitted on the training codes 69.4-82.6%,
            # the nearest single code instead of the person's mean 81.2%. Detector views (3 folds, seeds 0-2, 4 + 1
            # training faces per person, 1-NN of the 5th as a crop / cut by the detector from a photo at 120, 180,
            # 240 px): without 95.8% / 91.7, 92.5, 90.8%; with 96.7% / 98.3, 98.3, 97.5%.
            # The refit (a third more epochs on everyone once the threshold is set; 6 strangers per fold, 9 folds of
            # bench seeds 0-2 on the training side, 24 known people, 19 of them trained on first): the faces of the
            # calibration people, only enrolled, were named at the calibrated threshold 80% of the time, the trained
            # people's 93%. Refit, at the same thresholds: 93.1% named and 4.1% of 270 stranger faces accepted
            # (without: 90.3%, 4.4%), and at the strictest stranger 94.0% (without: 87.0%). At a third of the
            # learning rate 91.7%; 15 epochs 91.2%; a second network trained on everyone from scratch 91.7% (at twice
            # the time); rescaling the threshold by the trained people's spread did not help.
            return cls(kind=kind, metric_weight=1.0, dropout=0.2, head_margin=0.4, code_norm=True, refit_share=0.33,
                       train=TrainConfig(epochs=90, batch_size=32, learning_rate=1e-3, lr_schedule="cosine",
                                         augment=True, detector_views=True))
        raise BadInputError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(AUTOENCODER_KINDS)}")


class FaceAutoencoder:
    """Estimator: `fit(split)` trains, enrols the training faces and calibrates; then `embed`, `identify`."""

    def __init__(self, config: AEConfig | None = None) -> None:
        self.config = config or AEConfig.preset("ae-conv")
        self.kind = self.config.kind
        self.names_: list[str] = []
        self.train_names_: list[str] = []  # the identity head's classes (ae-metric)
        self.calibration_people_: list[str] = []  # kept out of training to calibrate the threshold
        self.history_: dict[str, list[float]] = {}
        self.metrics_: dict[str, Any] = {}
        self.test_predictions_: list[str] = []  # nearest person of each face of the last `evaluate`
        self.data_source_: str = ""
        self.keras_model_ = None
        self.gallery_: Gallery | None = None
        self.saved_gallery_: Gallery | None = None  # the gallery as last loaded from or saved to a bundle
        self.fit_seconds_: float = 0.0
        self.best_epoch_: int | None = None
        self.stopped_: bool = False

    # ---------------------------------------------------------------------------------- building
    def build(self, n_people: int = 0):
        """A fresh Keras model for this config (pure builders in `facelab.models.autoencoder`)."""
        from facelab.models import autoencoder as build

        c = self.config
        if c.kind == "ae-dense":
            encoder = build.build_dense_encoder(c.image_size, c.encoding_dim, c.hidden_units, c.dropout,
                                                c.code_activation, c.center_input)
            decoder = build.build_dense_decoder(c.image_size, c.encoding_dim, c.hidden_units)
        else:
            encoder = build.build_conv_encoder(c.image_size, c.encoding_dim, c.blocks, c.filters, c.dropout,
                                               c.code_activation, c.code_norm)
            decoder = build.build_conv_decoder(c.image_size, c.encoding_dim, c.blocks, c.filters)
        name = c.kind.replace("-", "_")
        return build.join(encoder, decoder, n_people=n_people if c.head else 0, name=name)

    # ---------------------------------------------------------------------------------- training
    def fit(self, split: DataSplit, on_epoch: ProgressFn | None = None, on_batch: ProgressFn | None = None,
            stop: StopRequest | None = None) -> FaceAutoencoder:
        """Train on `split.train` (validation loss on `split.val` keeps the best weights), enrol the training
        faces in `gallery_` and calibrate its threshold for the target false-accept rate.

        With enough people, `calibration_people` of them are kept out of training; their faces are the
        impostors (the trained people's validation faces the genuine samples). Afterwards they are enrolled
        (`calibration_people_` names them), and with `refit_share` the network first trains that share of the
        epochs more on everyone, the threshold kept. Otherwise `split.val` calibrates."""
        from facelab.training import seed_everything

        c = self.config
        if len(split.train.images) == 0:
            raise FaceLabError("cannot train an autoencoder: the training split has no faces")
        strangers = self._calibration_strangers(split.train)
        keep_train = ~np.isin(split.train.labels, strangers)
        train = split.train.subset(np.flatnonzero(keep_train))
        val = split.val.subset(np.flatnonzero(~np.isin(split.val.labels, strangers)))
        seed_everything(c.train.seed)
        # Detector views of every training face at once: the refit below trains on the kept-out people's too.
        views = self._training_views(split.train)
        present = sorted(set(train.labels.tolist()))
        if c.head and len(present) < 2:
            raise FaceLabError(f"{c.kind} learns to tell people apart: it needs at least 2 people, got {len(present)}")
        self.train_names_ = [train.names[i] for i in present]  # the identity head's classes, in order
        refit = c.refit_epochs if c.head and len(strangers) else 0
        model = self.build(len(present))
        progress = _Phases(c.train.epochs, refit, on_epoch, on_batch)
        result = self._train(model, views.subset(np.flatnonzero(~np.isin(views.labels, strangers))), val, c.train,
                             progress.first, stop)
        self.keras_model_ = model
        self.history_ = result.history
        self.fit_seconds_ = result.seconds
        self.best_epoch_ = result.best_epoch
        self.stopped_ = result.stopped
        self.data_source_ = train.source
        self.metrics_, self.test_predictions_ = {}, []  # a new model: earlier test results no longer hold

        self.gallery_ = self.new_gallery()
        self.enrol_dataset(train)
        if len(strangers):
            # Calibration strangers: people the model never saw, as every real stranger is. Faces of people
            # the identity head was trained to separate sit far from each other and would give a threshold
            # far too loose for strangers; these give an honest one. They are enrolled afterwards.
            self.calibration_people_ = [split.train.names[i] for i in strangers]
            kept_out = split.train.subset(np.flatnonzero(~keep_train))
            impostors = _concat(kept_out, split.val.subset(np.flatnonzero(np.isin(split.val.labels, strangers))))
            self.calibrate(_concat(val, impostors), impostors="unknown")
            if refit and not self.stopped_:
                self._refit(views, split, val, progress, stop)
            else:
                self.enrol_dataset(kept_out)
        else:
            self.calibration_people_ = []
            if not len(split.val.images):
                # Impostor distances from training faces are optimistic, but better than no threshold at all.
                log.warning("no validation faces: the unknown-face threshold is calibrated on training faces")
            self.calibrate(split.val if len(split.val.images) else train)
        self.names_ = self.gallery_.names
        return self

    def _training_views(self, train: FaceDataset) -> FaceDataset:
        """`train`, plus each face as the detector cuts it from a photo when the config asks for detector views."""
        if not self.config.train.detector_views:
            return train
        images, labels = detector_views(train.images, train.labels)
        return dataclasses.replace(train, images=images, labels=labels, paths=None, usage=None)

    def _train(self, model, fit_on: FaceDataset, val: FaceDataset, config: TrainConfig,
               progress: tuple[ProgressFn | None, ProgressFn | None], stop: StopRequest | None):
        """One `fit_keras` run of `model` on `fit_on`; the identity head's classes are `train_names_`."""
        from facelab.models.autoencoder import IDENTITY, RECON, cosine_margin_loss
        from facelab.training import fit_keras

        c = self.config
        classes = {name: j for j, name in enumerate(self.train_names_)}

        def targets(ds: FaceDataset, faces: np.ndarray):
            keep = np.array([ds.names[lab] in classes for lab in ds.labels], bool)
            return {RECON: faces, IDENTITY: np.array([classes.get(ds.names[lab], 0) for lab in ds.labels],
                                                     np.int64)}, keep

        x = self._faces(fit_on.images)[..., None]  # (N, S, S, 1)
        if c.head:
            y, _ = targets(fit_on, x)
            loss = {RECON: "mse", IDENTITY: cosine_margin_loss(c.head_scale, c.head_margin)}
            loss_weights = {RECON: 1.0, IDENTITY: c.metric_weight}
        else:
            y, loss, loss_weights = x, "mse", None

        validation = None
        if len(val.images):
            xv = self._faces(val.images)[..., None]
            if c.head:
                yv, keep = targets(val, xv)
                # A validation face of someone the head never saw has no class: it is left out of val_loss.
                validation = (xv[keep], {k: v[keep] for k, v in yv.items()}) if keep.any() else None
            else:
                validation = (xv, xv)

        augment = AugmentConfig() if config.augment else None
        noise = c.noise_std

        def transform(xb, yb, rng: np.random.Generator):
            # Augmented faces are both input and target; noise goes on the input only (denoising).
            clean = xb
            if augment is not None:
                clean = augment_faces(xb[..., 0], rng, augment)[..., None]
            noisy = np.clip(clean + rng.normal(0.0, noise, clean.shape), 0.0, 1.0).astype(np.float32) if noise else clean
            if isinstance(yb, dict):
                return noisy, {**yb, RECON: clean}
            return noisy, clean

        use_transform = augment is not None or noise > 0
        on_epoch, on_batch = progress
        return fit_keras(model, x, y, config=config, validation=validation, loss=loss, loss_weights=loss_weights,
                         transform=transform if use_transform else None, on_epoch=on_epoch, on_batch=on_batch,
                         stop=stop)

    def _refit(self, views: FaceDataset, split: DataSplit, genuine: FaceDataset, progress: _Phases,
               stop: StopRequest | None) -> None:
        """Train `config.refit_epochs` more on every training person, the calibration people now too, then enrol
        everyone again under the threshold calibrated before.

        Why: a person only enrolled sits less tightly around their own code than a trained one (validation
        folds: 80% of their faces named at the calibrated threshold, 93% of the trained people's), and the
        calibration people are a fifth of the people. The threshold still comes from faces the model had not
        seen when it was set."""
        from facelab.models.autoencoder import IDENTITY, decoder_of, encoder_of, join

        c = self.config
        old = self.keras_model_
        names = self.train_names_ + self.calibration_people_
        # Same encoder and decoder (their weights go on training); the head gains one class per new person,
        # started at the mean direction of their codes, so the first epochs do not scramble what was learnt.
        model = join(encoder_of(old), decoder_of(old), n_people=len(names), name=old.name)
        kernel = np.zeros((c.encoding_dim, len(names)), np.float32)
        kernel[:, :len(self.train_names_)] = old.get_layer(IDENTITY).get_weights()[0]
        owners = np.array(split.train.face_names)
        for j, name in enumerate(self.calibration_people_, start=len(self.train_names_)):
            kernel[:, j] = unit_length(unit_length(self.encode(split.train.images[owners == name])).mean(axis=0))
        model.get_layer(IDENTITY).set_weights([kernel])
        self.train_names_ = names
        done = len(self.history_.get("loss", []))
        result = self._train(model, views, split.val, dataclasses.replace(c.train, epochs=c.refit_epochs),
                             progress.second(done, self.fit_seconds_), stop)
        self.keras_model_ = model
        later = {**result.history, "seconds": [self.fit_seconds_ + t for t in result.history.get("seconds", [])]}
        for key in set(self.history_) | set(later):
            self.history_[key] = list(self.history_.get(key, [])) + list(later.get(key, []))
        self.fit_seconds_ += result.seconds
        if result.best_epoch is not None:
            self.best_epoch_ = done + result.best_epoch
        self.stopped_ = result.stopped
        threshold, calibration = self.gallery_.threshold, self.gallery_.calibration
        self.gallery_ = self.new_gallery()
        self.enrol_dataset(split.train)
        self.gallery_.threshold = threshold
        if calibration is not None and calibration.genuine and len(genuine.images):
            # The genuine side is measured again: the same validation faces, the refitted network.
            tar = self.gallery_.open_set_rates(self.embed(genuine.images), genuine.face_names)["tar"]
            calibration = dataclasses.replace(calibration, tar=tar)
        self.gallery_.calibration = calibration

    def _calibration_strangers(self, train: FaceDataset) -> np.ndarray:
        """Labels of the training people kept out of training to calibrate the threshold (may be empty).

        Needs at least 2 strangers and at least twice as many people left to train on; otherwise the
        validation faces of trained people calibrate (looser for strangers: see `fit`)."""
        c = self.config
        present = np.array(sorted(set(train.labels.tolist())), np.int64)
        n = calibration_stranger_count(c.calibration_people, len(present))
        if n == 0:
            if c.calibration_people > 0:
                log.info("too few people (%d) for calibration strangers: the unknown-face threshold comes from "
                         "validation faces of trained people, which is looser for strangers", len(present))
            return np.zeros(0, np.int64)
        rng = np.random.default_rng(c.train.seed + 7919)
        return np.sort(rng.choice(present, n, replace=False))

    def new_gallery(self) -> Gallery:
        """An empty gallery over this model's embedding, with the config's metric, mode and k."""
        c = self.config
        return Gallery(self.embed, metric=c.gallery_metric, mode=c.gallery_mode, k=c.gallery_k,
                       image_size=c.image_size, code_size=c.encoding_dim)

    def enrol_dataset(self, ds: FaceDataset) -> None:
        """Enrol every person of a dataset in `gallery_` (one embedding pass for all faces)."""
        gallery = self._need_gallery()
        codes = self.embed(ds.images)
        for label in sorted(set(ds.labels.tolist())):
            gallery.enrol_codes(ds.names[label], codes[ds.labels == label])

    def calibrate(self, ds: FaceDataset, far: float | None = None, impostors: str = "all") -> dict:
        """Set the gallery threshold for a false-accept rate from `ds` (validation faces, never test);
        `impostors="unknown"` counts only faces of people not enrolled as impostors (see `Gallery.calibrate`)."""
        gallery = self._need_gallery()
        far = self.config.far if far is None else far
        if len(ds.images) and (len(gallery) > 1 or any(n not in gallery for n in ds.names)):
            cal = gallery.calibrate_codes(self.embed(ds.images), ds.face_names, far, impostors=impostors)
            return cal.as_dict()
        log.warning("no faces to calibrate the unknown-face threshold; every face will be named")
        return {}

    # --------------------------------------------------------------------------------- inference
    def encode(self, faces: np.ndarray) -> np.ndarray:
        """Bottleneck codes of (N, S, S) faces (any size or colour depth is converted): (N, D) float32."""
        from facelab.training import predict_batches

        faces = self._faces(faces)
        if len(faces) == 0:
            return np.zeros((0, self.config.encoding_dim), np.float32)
        return np.asarray(predict_batches(self._encoder(), faces[..., None]), np.float32)

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Face embeddings: the codes (averaged with the mirror image's when `flip_average`), unit-length
        when `normalize_embedding`: (N, D) float32."""
        faces = self._faces(faces)
        unit = self.config.normalize_embedding
        codes = unit_length(self.encode(faces)) if unit else self.encode(faces)
        if self.config.flip_average and len(faces):
            # Chosen on validation strangers: +4 and +12 points of true accepts at the same false accepts.
            mirror = self.encode(np.ascontiguousarray(faces[:, :, ::-1]))
            codes = (codes + (unit_length(mirror) if unit else mirror)) / 2
        return (unit_length(codes) if unit else codes).astype(np.float32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Faces from (N, D) codes (as returned by `encode`, not normalised): (N, S, S) float32."""
        from facelab.training import predict_batches

        codes = np.asarray(codes, np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.config.encoding_dim:
            raise BadInputError(f"expected (N, {self.config.encoding_dim}) codes, got shape {codes.shape}")
        return np.asarray(predict_batches(self._decoder(), codes), np.float32)[..., 0]

    def reconstruct(self, faces: np.ndarray) -> np.ndarray:
        """Faces passed through the autoencoder: (N, S, S) float32 in [0, 1]."""
        return self.decode(self.encode(faces))

    def interpolate(self, face_a: np.ndarray, face_b: np.ndarray, steps: int = 8) -> np.ndarray:
        """Decoded faces on the line between two faces' codes: (steps, S, S)."""
        return interpolate_faces(self.encode, self.decode, self._faces([face_a])[0], self._faces([face_b])[0], steps)

    def recognizer(self, threshold: float | None = None) -> Gallery:
        """The gallery as a `Recognizer`; a given `threshold` (a distance) is set on a copy."""
        gallery = self._need_gallery()
        if threshold is None:
            return gallery
        if not threshold >= 0:  # NaN too
            raise BadInputError(f"threshold {threshold:g} is a code distance for a gallery: give one of 0 or more")
        new = gallery.copy()
        new.threshold = float(threshold)
        return new

    def identify(self, faces: np.ndarray):
        """`Identification`s of faces by the gallery (see `facelab.gallery.Gallery.identify`)."""
        return self._need_gallery().identify(faces)

    # -------------------------------------------------------------------------------- evaluation
    def evaluate(self, test: FaceDataset) -> dict[str, Any]:
        """Gallery identification of test faces: accuracy, top5, confusion and per_person over enrolled people
        (nearest person, threshold ignored), open-set rates at the calibrated threshold (tar; far and
        unknown_share for faces of people not enrolled), speed, and recon_mse, recon_psnr, recon_ssim.
        `test_predictions_` keeps the nearest person of every test face."""
        gallery = self._need_gallery()
        if len(test.images) == 0:
            raise FaceLabError("cannot evaluate: the test split has no faces")
        from facelab.evaluation import score_metrics, time_per_face

        faces = self._faces(test.images)
        codes = self.embed(faces)
        people, dist = gallery.distances(codes)
        # The data set's order for the confusion matrix's axes (the gallery lists calibration people last), people
        # enrolled since then after them.
        position = {n: i for i, n in enumerate(test.names)}
        order = sorted(range(len(people)), key=lambda j: (position.get(people[j], len(position)), people[j]))
        people, dist = [people[j] for j in order], dist[:, order]
        truth = test.face_names
        # Closed-set scores cover the faces of enrolled people; everyone else is measured open-set below.
        index = {n: j for j, n in enumerate(people)}
        enrolled = np.array([n in index for n in truth], bool)
        if not enrolled.any():
            raise FaceLabError("cannot evaluate: none of the test faces shows a person in the gallery")
        labels = np.array([index[n] for n, e in zip(truth, enrolled) if e], np.int64)
        metrics = score_metrics(labels, -dist[enrolled], people)
        rates = gallery.open_set_rates(codes, truth)
        timing = time_per_face(lambda f: gallery.identify_codes(self.embed(f)), faces)
        recon = self.reconstruct(faces)
        metrics.update(
            timing,
            threshold=_finite(gallery.threshold),
            # far and unknown_share need faces of people not enrolled; None (not NaN) keeps the JSON strict.
            tar=_finite(rates["tar"]), far=_finite(rates["far"]), unknown_share=_finite(rates["unknown_share"]),
            recon_mse=float(mse_per_image(faces, recon).mean()),
            recon_psnr=float(psnr_per_image(faces, recon).mean()),
            recon_ssim=float(ssim_per_image(faces, recon).mean()),
            confusion_names=list(people), gallery_people=len(gallery), not_enrolled_faces=int((~enrolled).sum()),
        )
        self.metrics_ = metrics
        self.test_predictions_ = [people[j] for j in dist.argmin(axis=1)]
        return metrics

    # ------------------------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> Path:
        """Save the model and its gallery as one bundle folder (atomic); returns the folder."""
        from facelab.registry import config_to_dict
        from facelab.storage import bundle_origin, save_bundle

        if self.keras_model_ is None:
            raise FaceLabError("nothing to save: the autoencoder has not been trained")
        gallery = self._need_gallery()
        meta = {
            "kind": self.kind,
            "config": config_to_dict(self.config),
            "names": gallery.names,
            "train_names": self.train_names_,
            "calibration_people": self.calibration_people_,
            "input_size": [self.config.image_size, self.config.image_size],
            "preprocessing": "grey face crop, resized to input_size, float32 in [0, 1]",
            "data_source": self.data_source_,
            "metrics": self.metrics_,  # save_bundle writes NaN and infinities as null
            "history": self.history_,
            "gallery": {"metric": gallery.metric, "mode": gallery.mode, "k": gallery.k,
                        "threshold": _finite(gallery.threshold),
                        "calibration": gallery.calibration.as_dict() if gallery.calibration else None},
            "fit_seconds": self.fit_seconds_,
            "best_epoch": self.best_epoch_,
        }
        folder = save_bundle(path, self.keras_model_, meta, extras=gallery.to_arrays(),
                             origin=getattr(self, "origin_", None))
        self.origin_ = bundle_origin(folder)
        self.saved_gallery_ = gallery.copy()  # what the bundle holds: `enrol.save_model` merges changes made since
        return folder

    @classmethod
    def load(cls, path: str | Path) -> FaceAutoencoder:
        """Load a bundle saved by `save` (model, config, history, metrics and gallery)."""
        from facelab.gallery import Calibration
        from facelab.registry import config_from_dict
        from facelab.storage import bundle_origin, load_bundle

        bundle = load_bundle(path)
        meta = bundle.meta
        if meta.get("kind") not in AUTOENCODER_KINDS:
            raise BadInputError(f"{path}: a {meta.get('kind')!r} bundle, not an autoencoder")
        try:
            config = config_from_dict(meta["kind"], meta.get("config") or {})
        except (TypeError, FaceLabError) as err:
            raise BadInputError(f"{path}: bundle config is not an autoencoder config ({err})") from None
        if "flip_average" not in (meta.get("config") or {}):
            config = dataclasses.replace(config, flip_average=False)  # bundles from before the option
        model = cls(config)
        model.keras_model_ = bundle.model
        try:
            model._encoder(), model._decoder()
        except ValueError:
            raise BadInputError(f"{path}: the saved model has no encoder/decoder parts") from None
        side = config.image_size
        if tuple(model._encoder().inputs[0].shape[1:]) != (side, side, 1):
            raise BadInputError(f"{path}: the saved model reads {tuple(model._encoder().inputs[0].shape[1:])} inputs "
                                f"but its config says {side}x{side} faces")
        code_size = int(model._encoder().output_shape[-1])
        if code_size != config.encoding_dim:
            raise BadInputError(f"{path}: the model makes {code_size}-number codes but its config says "
                                f"{config.encoding_dim}")
        if bundle.extras:
            model.gallery_ = Gallery.from_arrays(bundle.extras, model.embed, code_size=code_size)
            cal = (meta.get("gallery") or {}).get("calibration")
            if cal:
                try:
                    model.gallery_.calibration = Calibration(**{k: (math.nan if v is None else v) for k, v in cal.items()})
                except TypeError:  # other fields than Calibration's
                    raise BadInputError(f"{path}: the bundle's gallery calibration is malformed") from None
        else:
            model.gallery_ = model.new_gallery()
        model.names_ = model.gallery_.names
        model.train_names_ = list(meta.get("train_names") or [])
        model.calibration_people_ = list(meta.get("calibration_people") or [])
        model.history_ = dict(meta.get("history") or {})
        model.metrics_ = dict(meta.get("metrics") or {})
        model.data_source_ = meta.get("data_source", "")
        model.fit_seconds_ = float(meta.get("fit_seconds") or 0.0)
        model.best_epoch_ = meta.get("best_epoch")
        model.origin_ = bundle_origin(path, meta)  # a later save over it checks nobody else saved there meanwhile
        model.saved_gallery_ = model.gallery_.copy()
        return model

    # ---------------------------------------------------------------------------------- internals
    def _need_model(self):
        if self.keras_model_ is None:
            raise FaceLabError("the autoencoder has not been trained or loaded yet")
        return self.keras_model_

    def _need_gallery(self) -> Gallery:
        if self.gallery_ is None:
            raise FaceLabError("the autoencoder has no gallery yet: train or load a model first")
        return self.gallery_

    def _encoder(self):
        from facelab.models.autoencoder import encoder_of

        return encoder_of(self._need_model())

    def _decoder(self):
        from facelab.models.autoencoder import decoder_of

        return decoder_of(self._need_model())

    def _faces(self, faces) -> np.ndarray:
        """(N, S, S) float32 in [0, 1] at the model's size; other sizes and colour images are converted."""
        return as_faces(faces, self.config.image_size)


class _Phases:
    """Progress of a training that runs twice (the training, then the refit) reported as one run of all their
    epochs, so that the bar and the epoch count go on rather than start again."""

    def __init__(self, epochs: int, refit_epochs: int, on_epoch: ProgressFn | None, on_batch: ProgressFn | None):
        self.epochs, self.refit_epochs = epochs, refit_epochs
        self.on_epoch, self.on_batch = on_epoch, on_batch

    @property
    def first(self) -> tuple[ProgressFn | None, ProgressFn | None]:
        """Callbacks for the first run."""
        total = self.epochs + self.refit_epochs
        return self._shifted(self.on_epoch, 0, total, 0.0), self._shifted(self.on_batch, 0, total, 0.0)

    def second(self, epochs_done: int, seconds_done: float) -> tuple[ProgressFn | None, ProgressFn | None]:
        """Callbacks for the refit, after a first run of `epochs_done` epochs that took `seconds_done`."""
        total = epochs_done + self.refit_epochs
        return (self._shifted(self.on_epoch, epochs_done, total, seconds_done),
                self._shifted(self.on_batch, epochs_done, total, seconds_done))

    def _shifted(self, report: ProgressFn | None, offset: int, total: int, seconds: float) -> ProgressFn | None:
        if report is None or not self.refit_epochs:
            return report

        def shifted(p: TrainingProgress) -> None:
            eta = p.eta_s
            if eta is not None:  # this run's remaining time, plus the epochs of the other run still to come
                eta += (total - offset - p.epochs) * (p.elapsed_s + eta) / max(p.epochs, 1)
            logs = {**p.logs, "seconds": p.logs["seconds"] + seconds} if "seconds" in p.logs else p.logs
            report(dataclasses.replace(p, epoch=p.epoch + offset, epochs=total, elapsed_s=p.elapsed_s + seconds,
                                       eta_s=eta, logs=logs))

        return shifted


def calibration_stranger_count(share: float, people: int) -> int:
    """How many of `people` training people `fit` keeps out as calibration strangers for a `share` of them: 0 unless
    that leaves at least 2 strangers and twice as many people to train on."""
    n = int(round(share * people)) if share > 0 else 0
    return n if n >= 2 and people - n >= 2 * n else 0


def _concat(a: FaceDataset, b: FaceDataset) -> FaceDataset:
    """Faces of two subsets of one dataset (same names) as one dataset."""
    return FaceDataset(np.concatenate([a.images, b.images]), np.concatenate([a.labels, b.labels]), a.names, a.source)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
