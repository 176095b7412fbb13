"""Recognition: who is this face? The common answer type and the protocol every recogniser follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

UNKNOWN = "unknown"


def is_reserved_name(name: str) -> bool:
    """True for "unknown" in any case or spacing: the answer for faces nobody knows can name no person."""
    return " ".join(str(name).split()).lower() == UNKNOWN


@dataclass(frozen=True)
class Identification:
    """The answer for one face: a name (or "unknown"), a confidence in [0, 1] and the best candidates."""

    name: str
    confidence: float
    known: bool
    top: list[tuple[str, float]] = field(default_factory=list)  # up to 3 (name, score), best first
    # A gallery's code distances of the `top` people (its threshold is a distance); empty for a classifier.
    distances: list[float] = field(default_factory=list)


def score_text(answer: Identification) -> str:
    """The figure its threshold is compared with: "distance 0.0856" for a gallery, "p 0.990" for a classifier."""
    return f"distance {answer.distances[0]:.4g}" if answer.distances else f"p {answer.confidence:.3f}"


class Recognizer(Protocol):
    """Anything that names faces: a classifier with a probability threshold or an embedding gallery."""

    threshold: float

    def identify(self, faces: np.ndarray) -> list[Identification]:
        """One `Identification` per (N, S, S) float32 face."""
        ...
