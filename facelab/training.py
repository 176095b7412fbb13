"""The one Keras training loop both model families share: `fit_keras(model, x, y, config=...)`.

It feeds NumPy data through a `keras.utils.PyDataset` (so a per-batch `transform` can augment or
add noise), builds the optimizer from a frozen `TrainConfig` (Adam or AdamW, gradient clipping,
learning-rate schedule), reports progress per batch and per epoch as `TrainingProgress`, honours a
`StopRequest` after the current batch, keeps the best weights by the validation monitor, and turns
a NaN loss into a `TrainingError`. Everything is plain Keras 3, so it runs on any backend.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelab.errors import FaceLabError

log = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine", "plateau")
Arrays = np.ndarray | Mapping[str, np.ndarray]
# transform(x_batch, y_batch, rng) -> (x_batch, y_batch); runs on NumPy batches of training data only.
Transform = Callable[[Arrays, Arrays, np.random.Generator], tuple[Arrays, Arrays]]
ProgressFn = Callable[["TrainingProgress"], None]


class TrainingError(FaceLabError):
    """Training could not go on (NaN loss, empty data); the message says what to change."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, schedule, augmentation, early stopping and the seed.

    `metadata` carries help text and limits so the CLI and the dashboard can build flags and sliders
    (see `facelab.registry.config_fields`).
    """

    epochs: int = field(default=60, metadata={"help": "maximum number of passes over the training set",
                                               "min": 1, "max": 1000})
    batch_size: int = field(default=32, metadata={"help": "faces per gradient step", "min": 1, "max": 1024})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (Adam)",
                                                         "min": 1e-5, "max": 0.1, "log": True})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay (AdamW); 0 = plain Adam",
                                                       "min": 0.0, "max": 0.1})
    clipnorm: float = field(default=1.0, metadata={"help": "clip each gradient to this norm (guards against "
                                                           "exploding gradients); 0 = off", "min": 0.0, "max": 100.0})
    lr_schedule: str = field(default="cosine", metadata={"help": "learning-rate schedule", "choices": LR_SCHEDULES})
    warmup_epochs: int = field(default=0, metadata={"help": "linear warm-up epochs (cosine schedule)",
                                                    "min": 0, "max": 100})
    augment: bool = field(default=True, metadata={"help": "random shifts, rotations, flips and lighting "
                                                          "on training faces"})
    detector_views: bool = field(default=False, metadata={
        "help": "also train on each face as the face detector cuts it out of a photo, so that faces in photos and "
                "webcam frames are named about as well as the data set's own crops (each epoch then has twice the "
                "faces; preparing them takes about 30 ms per face here, for at most 5000 of them)"})
    early_stopping_patience: int = field(default=0, metadata={"help": "stop after this many epochs without "
                                                                      "validation improvement; 0 = off",
                                                              "min": 0, "max": 500})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing for classifiers",
                                                          "min": 0.0, "max": 0.5})
    seed: int = field(default=0, metadata={"help": "random seed (weights, shuffling, augmentation)",
                                           "min": 0, "max": 2**31 - 1})

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise TrainingError("learning_rate must be positive")


class StopRequest:
    """A thread-safe flag: another thread calls `.request()`, training ends after the current batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is: 1-based epoch and batch, elapsed seconds, an ETA and the latest logs."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    elapsed_s: float
    eta_s: float | None  # None until a batch has finished
    logs: dict[str, float]

    @property
    def fraction(self) -> float:
        """Share of the maximum number of batches done, in [0, 1] (early stopping may end sooner)."""
        total = self.epochs * self.batches
        return min(1.0, ((self.epoch - 1) * self.batches + self.batch) / total) if total else 1.0


@dataclass
class FitResult:
    """What `fit_keras` returns: per-epoch history lists, epochs run, seconds, and how it ended."""

    history: dict[str, list[float]]
    epochs_run: int
    seconds: float
    best_epoch: int | None  # 1-based epoch whose weights the model now holds
    stopped: bool  # ended by a StopRequest


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so a run repeats (same weights, same shuffles)."""
    import keras

    keras.utils.set_random_seed(int(seed))


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """Adam (or AdamW with weight decay), with clipping and the configured learning-rate schedule."""
    import keras

    lr: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
        if warmup:
            lr = keras.optimizers.schedules.CosineDecay(config.learning_rate * 0.05, total - warmup, alpha=0.01,
                                                        warmup_target=config.learning_rate, warmup_steps=warmup)
        else:
            lr = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.01)
    clip = {"clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **clip)
    return keras.optimizers.Adam(learning_rate=lr, **clip)


def _n_samples(x: Arrays) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _take(a: Arrays, idx: np.ndarray) -> Arrays:
    return {k: v[idx] for k, v in a.items()} if isinstance(a, Mapping) else a[idx]


def _batches(x: Arrays, y: Arrays, batch_size: int, seed: int, transform: Transform | None):
    """Shuffled training batches with an optional per-batch transform, as a `keras.utils.PyDataset`."""
    import keras  # imported late so configs and StopRequest stay cheap to import

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.n = _n_samples(x)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(self.n)

        def __len__(self) -> int:
            return math.ceil(self.n / batch_size)

        def __getitem__(self, i: int):
            idx = self.order[i * batch_size: (i + 1) * batch_size]
            xb, yb = _take(x, idx), _take(y, idx)
            if transform is not None:
                xb, yb = transform(xb, yb, self.rng)
            return xb, yb

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(self.n)

    return Batches()


def _fit_callbacks(monitor: str, mode: str, epochs: int, batches: int, on_epoch: ProgressFn | None,
                   on_batch: ProgressFn | None, stop: StopRequest | None, batch_interval_s: float):
    """The callback that reports, stops, watches for NaN and keeps the best weights."""
    import keras

    class FaceLabCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}
            self.best: float | None = None
            self.best_weights: list[np.ndarray] | None = None
            self.best_epoch: int | None = None
            self.nan_at: tuple[int, int] | None = None
            self.stopped = False
            self.epoch = 0
            self.batches_done = 0
            self.first_batch_s: float | None = None  # seconds to the end of the first batch
            self.start = time.perf_counter()
            self.last_report = 0.0

        def _progress(self, batch: int, logs: dict) -> TrainingProgress:
            elapsed = time.perf_counter() - self.start
            done = self.epoch * batches + batch
            # The pace of the batches after the first, which also builds and traces the graph: counted in, it made
            # the first estimate 5-10x too long ("7:36 left", then "51 s left" a second later).
            eta = ((elapsed - self.first_batch_s) / (done - 1) * (epochs * batches - done)
                   if done >= 2 and self.first_batch_s is not None else None)
            clean = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0}
            return TrainingProgress(self.epoch + 1, epochs, batch, batches, elapsed, eta, clean)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.batches_done = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches_done = batch + 1
            if self.first_batch_s is None:
                self.first_batch_s = time.perf_counter() - self.start
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.nan_at = (self.epoch + 1, batch + 1)
                self.model.stop_training = True
                return
            if on_batch is not None:
                now = time.perf_counter()
                # Throttled so a dashboard redraw per batch cannot slow training down.
                if now - self.last_report >= batch_interval_s or batch + 1 == batches:
                    self.last_report = now
                    on_batch(self._progress(batch + 1, logs))
            if stop is not None and stop.requested:  # checked after reporting: a request made there counts
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if self.nan_at is not None:
                return
            try:
                logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            except (AttributeError, TypeError, ValueError):
                pass
            logs["seconds"] = time.perf_counter() - self.start
            for key, value in logs.items():
                self.history.setdefault(key, []).append(float(value))
            value = logs.get(monitor) if monitor else None
            if not monitor:
                self.best_epoch = epoch + 1  # no validation: the latest weights are the ones kept
            elif value is not None and math.isfinite(float(value)):
                better = self.best is None or (value < self.best if mode == "min" else value > self.best)
                if better:
                    self.best, self.best_epoch = float(value), epoch + 1
                    self.best_weights = self.model.get_weights()
            if on_epoch is not None:  # a stopped epoch says how far it got, not "batch 10/10"
                on_epoch(self._progress(self.batches_done, logs))
            if stop is not None and stop.requested:
                self.stopped = True
                self.model.stop_training = True

        def restore_best(self) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return FaceLabCallback()


def fit_keras(
    model,
    x: Arrays,
    y: Arrays,
    *,
    config: TrainConfig,
    validation: tuple[Arrays, Arrays] | None = None,
    loss: Any = None,
    metrics: Any = None,
    loss_weights: Any = None,
    transform: Transform | None = None,
    monitor: str | None = None,
    on_epoch: ProgressFn | None = None,
    on_batch: ProgressFn | None = None,
    stop: StopRequest | None = None,
    batch_interval_s: float = 0.0,
    extra_callbacks: list | None = None,
) -> FitResult:
    """Train `model` in place on (x, y) and return its history; the model ends with its best weights.

    x and y are arrays or dicts of arrays (multi-input/-output models) with N samples each.
    `loss`/`metrics`/`loss_weights` compile the model with the optimizer from `config`; with `loss=None`
    the model must already be compiled. `transform(xb, yb, rng)` changes each training batch (augmentation,
    denoising noise). Best weights follow `monitor` (default `val_loss`; a name containing "acc" is
    maximised); without validation data the final weights are kept. `on_batch` gets a `TrainingProgress`
    after each batch (at most every `batch_interval_s` seconds), `on_epoch` after each epoch.
    `stop.request()` from any thread ends training after the current batch, keeping the best weights so far.
    A NaN/inf loss raises TrainingError.
    """
    import keras

    n = _n_samples(x)
    if n == 0:
        raise TrainingError("no training data: the training split is empty")
    if validation is not None and _n_samples(validation[0]) == 0:
        validation = None
    if validation is None:
        # Without held-out data there is nothing honest to select on: keep the final weights (with a
        # decaying schedule the last epoch is the intended one) and stop early only on the training loss.
        monitor = ""
    else:
        monitor = monitor or "val_loss"
    mode = "max" if "acc" in monitor else "min"

    data = _batches(x, y, config.batch_size, config.seed, transform)
    batches = len(data)
    if loss is not None:
        model.compile(optimizer=make_optimizer(config, batches), loss=loss, metrics=metrics,
                      loss_weights=loss_weights)
    elif model.optimizer is None:
        raise TrainingError("fit_keras needs either a loss or a compiled model")

    cb = _fit_callbacks(monitor, mode, config.epochs, batches, on_epoch, on_batch, stop, batch_interval_s)
    callbacks: list = [cb]
    watch = monitor or "loss"
    if config.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=watch, mode=mode,
                                                       patience=config.early_stopping_patience))
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=watch, mode=mode, factor=0.5,
                                                           patience=max(2, config.early_stopping_patience // 3 or 5),
                                                           min_lr=config.learning_rate / 100))
    callbacks += extra_callbacks or []

    start = time.perf_counter()
    if stop is not None and stop.requested:
        log.info("stop requested before training started")
    # shuffle=False: the batches shuffle themselves with the run's own seeded generator. Keras' shuffle of a
    # PyDataset draws from Python's global `random`, which another training seeding it at the same time (a second
    # page, a second session) changes, so the same seed would not repeat the run.
    model.fit(data, validation_data=validation, epochs=config.epochs, callbacks=callbacks, verbose=0,
              validation_batch_size=max(config.batch_size, 256), shuffle=False)
    seconds = time.perf_counter() - start

    if cb.nan_at is not None:
        cb.restore_best()
        epoch, batch = cb.nan_at
        raise TrainingError(
            f"training stopped: the loss became NaN or infinite at epoch {epoch}, batch {batch}. "
            f"Lower the learning rate (now {config.learning_rate:g}) or turn gradient clipping on (clipnorm)."
        )
    cb.restore_best()
    epochs_run = len(next(iter(cb.history.values()), []))
    log.info("trained %d epoch(s) in %.1f s; best %s %.4g at epoch %s", epochs_run, seconds, monitor,
             cb.best if cb.best is not None else float("nan"), cb.best_epoch)
    return FitResult(cb.history, epochs_run, seconds, cb.best_epoch, cb.stopped)


def predict_batches(model, x: Arrays, batch_size: int = 256) -> Any:
    """Run `model` on x through the compiled `predict_on_batch` path, in chunks; returns NumPy."""
    n = _n_samples(x)
    if n == 0:
        raise TrainingError("nothing to predict: no faces")
    chunks = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    return _join([(model.predict_on_batch(_take(x, idx)), len(idx)) for idx in chunks])


def _join(parts: list[tuple[Any, int]]) -> Any:
    """Concatenate chunked model outputs (arrays, lists or dicts of arrays), keeping the first m rows of each."""
    first = parts[0][0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([np.asarray(p[k])[:m] for p, m in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([np.asarray(p[j])[:m] for p, m in parts]) for j in range(len(first))]
    return np.concatenate([np.asarray(p)[:m] for p, m in parts])


def compiled_predictor(model, jit: bool = True, chunk: int = 256) -> Callable[[Arrays], Any]:
    """A fast inference function for a trained model: the compiled `predict_on_batch` path, XLA where it helps.

    The model is compiled for inference only (no loss; TensorFlow/JAX get `jit_compile=True`). Batches
    are padded (to a power of two up to 32, then to multiples of 32, at most `chunk`) so a live stream
    and a test set reuse a handful of compiled shapes instead of compiling one per batch size.
    """
    import keras

    backend = keras.backend.backend()
    model.compile(jit_compile=bool(jit and backend in ("tensorflow", "jax")))

    def predict(x: Arrays) -> Any:
        n = _n_samples(x)
        if n == 0:
            raise TrainingError("nothing to predict: no faces")
        parts = []
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            # Small batches round up to a power of two, larger ones to a multiple of 32 (less padding).
            size = 1 << max(0, int(len(idx) - 1).bit_length()) if len(idx) <= 32 else -(-len(idx) // 32) * 32
            padded = np.concatenate([idx, np.full(size - len(idx), idx[-1])])
            parts.append((model.predict_on_batch(_take(x, padded)), len(idx)))
        return _join(parts)  # padding rows dropped

    return predict
