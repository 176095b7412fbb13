"""Training in a background thread: the dashboard's trainings and enrolment's fine-tunes share this.

Keras callbacks only write progress here under a lock and readers take snapshots, so a page (or a
live stream) never waits on training; the finished model is a new object, swapped in by its reader.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from facelab.errors import FaceLabError
from facelab.storage import release_bundle_folder, reserve_bundle_folder
from facelab.training import StopRequest

log = logging.getLogger(__name__)


class TrainingJob:
    """One training run in a background thread: progress, growing history, the finished model.

    The Keras callbacks (`on_epoch`, `on_batch`) only write here under a lock; the page reads a
    snapshot. The finished model is saved as a bundle by the thread itself, so nothing depends on
    the browser tab staying open. With a `folder`, the bundle's own folder is claimed at once (`name`, or
    `name-2`, ... when another training took it meanwhile; `self.name` says which).
    """

    def __init__(self, name: str, model: Any, split: Any, folder: Path | None = None, evaluate: bool = True,
                 init_from: Any = None) -> None:
        self.model = model
        self.split = split
        # None: the caller saves the model. Claimed now, not at the end, so that no other training saves over it.
        self.target = reserve_bundle_folder(folder, name) if folder is not None else None
        self.name = self.target.name if self.target is not None else name
        self.evaluate = evaluate
        self.init_from = init_from  # a trained model whose weights training starts from (fine-tuning)
        self.stop = StopRequest()
        self.progress = None  # latest facelab.training.TrainingProgress
        self.phase = "training"  # then "testing", "saving": the seconds after the last batch are not a hang
        self.history: dict[str, list[float]] = {}
        self.error: str | None = None
        self.save_error: str | None = None  # the model trained but could not be saved: it is kept all the same
        self.path: Path | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.collected = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"facelab-train-{name}", daemon=True)

    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.finished is None

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running

    def _on_batch(self, progress) -> None:
        with self._lock:
            self.progress = progress

    def _on_epoch(self, progress) -> None:
        with self._lock:
            self.progress = progress
            for key, value in progress.logs.items():
                self.history.setdefault(key, []).append(float(value))

    @property
    def result(self) -> Any:
        """The trained model once the job has finished without error, else None."""
        return self.model if self.finished is not None and self.error is None else None

    def final_history(self) -> dict[str, list[float]]:
        """The trained model's history (with its end-of-training entries), else what the job recorded."""
        return dict(getattr(self.model, "history_", None) or self.snapshot()[1])

    def snapshot(self) -> tuple[Any, dict[str, list[float]]]:
        """The latest progress and a copy of the history so far."""
        with self._lock:
            return self.progress, {k: list(v) for k, v in self.history.items()}

    def _run(self) -> None:
        try:
            warm = {"init_from": self.init_from} if self.init_from is not None else {}
            self.model.fit(self.split, on_epoch=self._on_epoch, on_batch=self._on_batch, stop=self.stop, **warm)
            if self.evaluate and len(self.split.test.images):
                self.phase = "testing"
                self.model.evaluate(self.split.test)
            if self.target is not None:
                self.phase = "saving"
                try:
                    self.path = Path(self.model.save(self.target))
                except FaceLabError as err:  # minutes of training are not thrown away for a full disk
                    self.save_error = str(err)
        except FaceLabError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - a failed run must end the job, not the server thread
            log.exception("training %s failed", self.name)
            self.error = f"training failed: {type(err).__name__}: {err}"
        finally:
            if self.target is not None and self.path is None:
                release_bundle_folder(self.target)
            self.finished = time.time()


def format_seconds(seconds: float | None) -> str:
    """"42 s" or "3:05" for a duration; "..." while it is not known yet."""
    if seconds is None:
        return "..."
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
