"""An embedding gallery: enrol people from face images, name new faces by nearest neighbour, answer
"unknown" beyond a distance threshold calibrated for a target false-accept rate.

Any `embed(faces (N, S, S)) -> codes (N, D)` works: an autoencoder's encoder or a classifier's
penultimate layer. People are added and removed without retraining; `to_arrays`/`from_arrays` turn
the gallery into plain arrays for a model bundle.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from facelab import FACE_SIZE
from facelab.errors import BadInputError, FaceLabError
from facelab.preprocess import as_faces, to_face
from facelab.recognition import UNKNOWN, Identification, is_reserved_name

log = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
MODES = ("mean", "all")
TOP = 5  # candidates kept per answer (the Identification shows them best first)
MIN_TAIL_FIT = 10  # impostor samples needed before a normal tail is fitted (see `Gallery.calibrate_codes`)

Embed = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Calibration:
    """How a threshold was chosen: target and achieved false-accept rate, true-accept rate, sample sizes."""

    threshold: float
    far_target: float
    far: float  # share of impostor samples accepted at `threshold`
    tar: float  # share of genuine samples named correctly and accepted
    genuine: int
    impostors: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def describe(self) -> str:
        """One sentence for people: what the threshold was set for and what it did on the calibration faces."""
        text = (f"Calibrated threshold {self.threshold:.4g}: set for {self.far_target:.0%} false accepts, it accepted "
                f"{self.far:.0%} of {self.impostors} faces of people the gallery does not know")
        if self._has_genuine:
            return text + f" and named {self.tar:.0%} of {self.genuine} validation faces of known people."
        # Trained without validation faces: nothing measured the known side, so say so rather than seem complete.
        return (text + ". With no validation faces, how many known faces it names was not measured: if it turns "
                "known people away, raise the distance.")

    def few_known_advice(self, kind: str) -> str:
        """What to do when the threshold turns most known faces away (`names_few_known`), for a model `kind`."""
        better = ("train it for more epochs" if kind == "ae-metric" else
                  "train `ae-metric`, whose codes are trained to separate people")
        # Not "its codes barely tell people apart": a walk saw this beside 88.5% test accuracy (the nearest person,
        # no threshold). The codes' margin between known people and strangers is what is small.
        return (f"At its calibrated threshold this model names only {self.tar:.0%} of known people's faces: to turn "
                f"away all but {self.far_target:.0%} of strangers it must turn most known faces away too, even where "
                "its nearest person is right (the test accuracy counts those). Raise the distance above to name more "
                f"faces (and accept more strangers), or {better}.")

    @property
    def names_few_known(self) -> bool:
        """True when the calibrated threshold turns most known people's faces away (codes that barely separate people)."""
        return self._has_genuine and self.tar < 0.5

    @property
    def _has_genuine(self) -> bool:
        return self.genuine > 0 and math.isfinite(self.tar)


class Gallery:
    """People's face codes and a nearest-neighbour rule; implements `facelab.recognition.Recognizer`.

    metric: "cosine" (distance 1 - cos, in [0, 2]) or "euclidean". mode: "mean" keeps one prototype
    per person (the mean of their codes, unit-normalised first for cosine); "all" keeps every code
    and scores a person by the mean of their `k` nearest codes. A face whose best distance is over
    `threshold` is "unknown"; the default (infinity) accepts every face until `calibrate` or a
    hand-set value says otherwise.
    """

    def __init__(self, embed: Embed | None = None, metric: str = "cosine", mode: str = "mean", k: int = 1,
                 threshold: float = math.inf, image_size: int = FACE_SIZE, code_size: int | None = None) -> None:
        if metric not in METRICS:
            raise FaceLabError(f"unknown gallery metric {metric!r}: use one of {', '.join(METRICS)}")
        if mode not in MODES:
            raise FaceLabError(f"unknown gallery mode {mode!r}: use one of {', '.join(MODES)}")
        if k < 1:
            raise FaceLabError(f"k must be at least 1, got {k}")
        self.embed = embed
        self.metric = metric
        self.mode = mode
        self.k = int(k)
        self.threshold = float(threshold)
        self.image_size = int(image_size)
        self.calibration: Calibration | None = None
        self._expected = code_size  # the model's code size, known before anyone is enrolled
        self._codes: dict[str, np.ndarray] = {}  # name -> (n, D) float32 codes, enrolment order
        # A live stream may identify while the page enrols: mutations swap whole dicts under a lock.
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ people
    @property
    def names(self) -> list[str]:
        """Enrolled people, in enrolment order."""
        return list(self._codes)

    @property
    def code_size(self) -> int | None:
        """D, the length of the stored codes (None while the gallery is empty)."""
        codes = next(iter(self._codes.values()), None)
        return None if codes is None else int(codes.shape[1])

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, name: object) -> bool:
        return name in self._codes

    def counts(self) -> dict[str, int]:
        """Codes stored per person."""
        return {name: len(codes) for name, codes in self._codes.items()}

    def enrol(self, name: str, faces: Sequence[np.ndarray] | np.ndarray) -> int:
        """Add a person's faces (any size or colour depth; preprocessed to grey S x S) to the gallery.

        A name already enrolled gets the new faces added. Returns the number of faces used.
        """
        name = _check_name(name)
        usable, reasons = [], []
        for i, img in enumerate(_as_list(faces)):
            try:
                arr = np.asarray(img)
                if arr.size == 0 or arr.ndim not in (2, 3):
                    raise BadInputError(f"shape {arr.shape} is not an image")
                if not np.isfinite(arr.astype(np.float64)).all():
                    raise BadInputError("contains NaN or infinite values")
                usable.append(to_face(arr, self.image_size))
            except Exception as err:  # noqa: BLE001 - one bad image must not hide the person's others
                reasons.append(f"image {i}: {err}")
        if not usable:
            detail = "; ".join(reasons) if reasons else "no images were given"
            raise FaceLabError(f"cannot enrol {name!r}: no usable face image ({detail})")
        if reasons:
            log.warning("enrolling %s: skipped %d unusable image(s): %s", name, len(reasons), "; ".join(reasons))
        self.enrol_codes(name, self._embed(np.stack(usable)))
        return len(usable)

    def enrol_codes(self, name: str, codes: np.ndarray) -> None:
        """Add already-computed (n, D) codes for a person."""
        name = _check_name(name)
        codes = np.asarray(codes, np.float32)
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2 or len(codes) == 0:
            raise FaceLabError(f"cannot enrol {name!r}: expected (n, D) codes, got shape {codes.shape}")
        finite = np.isfinite(codes).all(axis=1)
        if not finite.all():
            if not finite.any():
                raise FaceLabError(f"cannot enrol {name!r}: no usable face image (every code is NaN or infinite)")
            log.warning("enrolling %s: dropped %d non-finite code(s)", name, int((~finite).sum()))
            codes = codes[finite]
        self._check_code_size(codes.shape[1])
        with self._lock:
            new = dict(self._codes)
            new[name] = codes if name not in new else np.concatenate([new[name], codes])
            self._codes = new

    def remove(self, name: str) -> None:
        """Forget a person; their faces are "unknown" (or someone else) from now on."""
        with self._lock:
            if name not in self._codes:
                raise FaceLabError(f"{name!r} is not in the gallery (enrolled: {', '.join(self._codes) or 'nobody'})")
            self._codes = {n: c for n, c in self._codes.items() if n != name}

    # ---------------------------------------------------------------------------------- matching
    def distances(self, codes: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Per-person distances of (N, D) codes: (names, (N, P) float64), smaller is closer."""
        codes = np.asarray(codes, np.float64)
        gallery = self._codes  # one snapshot: enrol/remove swap the dict, never mutate it
        if not gallery:
            raise FaceLabError("the gallery is empty: enrol at least one person before identifying faces")
        if codes.ndim != 2:
            raise FaceLabError(f"expected (N, D) codes, got shape {codes.shape}")
        self._check_code_size(codes.shape[1], gallery)
        names = list(gallery)
        if self.metric == "cosine":
            codes = unit_length(codes)
        out = np.empty((len(codes), len(names)))
        for j, name in enumerate(names):
            refs = gallery[name].astype(np.float64)
            if self.metric == "cosine":
                refs = unit_length(refs)
            if self.mode == "mean":
                refs = refs.mean(axis=0, keepdims=True)
                if self.metric == "cosine":
                    refs = unit_length(refs)
            d = _pairwise(codes, refs, self.metric)  # (N, n)
            k = min(self.k, d.shape[1])
            out[:, j] = np.sort(d, axis=1)[:, :k].mean(axis=1)
        return names, out

    def encode(self, faces: np.ndarray) -> np.ndarray:
        """Codes of (N, S, S) faces (any size or colour depth is converted), as this gallery compares them."""
        faces = _as_list(faces)
        return self._embed(self._prepare(faces)) if len(faces) else np.zeros((0, self.code_size or 0), np.float32)

    def identify(self, faces: np.ndarray) -> list[Identification]:
        """One `Identification` per (N, S, S) face (a single (S, S) face is also accepted)."""
        faces = _as_list(faces)
        if len(faces) == 0:
            return []
        return self.identify_codes(self.encode(faces))

    def identify_codes(self, codes: np.ndarray) -> list[Identification]:
        """`identify` for codes already computed: (N, D) -> N answers."""
        names, dist = self.distances(codes)
        answers = []
        for row in dist:
            order = np.argsort(row, kind="stable")[:TOP]
            top = [(names[j], self.score(row[j])) for j in order]
            best = float(row[order[0]])
            known = best <= self.threshold
            answers.append(Identification(names[order[0]] if known else UNKNOWN, top[0][1], bool(known), top,
                                          [float(row[j]) for j in order]))
        return answers

    def score(self, distance: float) -> float:
        """A similarity in [0, 1] for a distance: cosine similarity (clipped at 0) or 1 / (1 + d)."""
        if self.metric == "cosine":
            return float(np.clip(1.0 - distance, 0.0, 1.0))
        return float(1.0 / (1.0 + distance))

    # ------------------------------------------------------------------------------- calibration
    def calibrate(self, faces: np.ndarray, names: Sequence[str], far: float = 0.01,
                  impostors: str = "all") -> Calibration:
        """Set `threshold` from validation faces so that about `far` of impostors are accepted.

        `names[i]` is who `faces[i]` shows. A face of someone enrolled gives one genuine sample (its
        distance to that person) and, with `impostors="all"`, one impostor sample (its nearest *other*
        person); a face of someone not enrolled is an impostor sample. `impostors="unknown"` keeps
        only the latter: right when the enrolled people were trained apart and so sit unrealistically
        far from each other. With fewer than 1 / `far` impostor samples (but at least 10) the threshold is
        also kept at or under the `far` quantile of a normal fitted to the impostor distances. Never
        calibrate on test faces.
        """
        return self.calibrate_codes(self.encode(faces), names, far, impostors)

    def calibrate_codes(self, codes: np.ndarray, names: Sequence[str], far: float = 0.01,
                        impostors: str = "all") -> Calibration:
        """`calibrate` for codes already computed."""
        if not 0.0 <= far < 1.0:
            raise FaceLabError(f"the false-accept rate must be in [0, 1), got {far}")
        if impostors not in ("all", "unknown"):
            raise FaceLabError(f"impostors must be 'all' or 'unknown', got {impostors!r}")
        names = [str(n) for n in names]
        if len(names) != len(codes):
            raise FaceLabError(f"{len(codes)} faces but {len(names)} names to calibrate with")
        people, dist = self.distances(codes)
        col = {n: j for j, n in enumerate(people)}
        genuine, genuine_ok, impostor = [], [], []
        for row, name in zip(dist, names):
            if name in col:
                j = col[name]
                others = np.delete(row, j)
                genuine.append(row[j])
                genuine_ok.append(others.size == 0 or row[j] < others.min())
                if others.size and impostors == "all":
                    impostor.append(others.min())
            else:
                impostor.append(row.min())
        if not impostor:
            raise FaceLabError("cannot calibrate: need faces of at least two enrolled people, or of people "
                               "who are not enrolled, to see how close impostors come")
        imp = np.sort(np.asarray(impostor))
        allowed = int(math.floor(far * len(imp) + 1e-9))  # impostors that may fall under the threshold
        if allowed == 0:
            # Just under the closest impostor: every impostor seen is rejected.
            threshold = float(np.nextafter(imp[0], -np.inf))
        elif allowed >= len(imp):
            threshold = float(imp[-1])
        else:  # halfway between the last impostor allowed in and the first kept out
            threshold = float((imp[allowed - 1] + imp[allowed]) / 2)
        if far > 0 and far * len(imp) < 1 and len(imp) >= MIN_TAIL_FIT:
            # Too few impostors to see a `far` tail: the closest one is a noisy and, for new people, usually
            # too loose estimate of it. A normal fitted to the impostor distances extrapolates the tail; the
            # stricter of the two thresholds wins.
            spread = float(imp.std(ddof=1))
            tail = float(imp.mean()) + NormalDist().inv_cdf(far) * spread
            # A tail at or under 0 says the normal fits badly (distances are never negative), and it would
            # turn every face away: then only the closest impostor counts.
            if tail > 0:
                threshold = min(threshold, tail)
        gen = np.asarray(genuine)
        ok = np.asarray(genuine_ok, bool)
        cal = Calibration(
            threshold=threshold, far_target=float(far), far=float((imp <= threshold).mean()),
            tar=float(((gen <= threshold) & ok).mean()) if len(gen) else float("nan"),
            genuine=len(gen), impostors=len(imp),
        )
        self.threshold = threshold
        self.calibration = cal
        log.info("gallery threshold %.4f for FAR %.3f (val TAR %.3f, %d genuine, %d impostor samples)",
                 threshold, far, cal.tar, cal.genuine, cal.impostors)
        return cal

    def open_set_rates(self, codes: np.ndarray, names: Sequence[str]) -> dict[str, float]:
        """At the current threshold: rank-1 rate, true-accept rate (right name and accepted) of enrolled
        people's faces; false-accept rate and share answered "unknown" of everyone else's faces."""
        answers = self.identify_codes(codes)
        enrolled = np.array([n in self._codes for n in names], bool)
        right = np.array([a.top[0][0] == n for a, n in zip(answers, names)], bool)
        accepted = np.array([a.known for a in answers], bool)
        mean = lambda m: float(m.mean()) if m.size else float("nan")  # noqa: E731
        return {
            "rank1": mean(right[enrolled]),
            "tar": mean((right & accepted)[enrolled]),
            "far": mean(accepted[~enrolled]),
            "unknown_share": mean(~accepted[~enrolled]),
            "known_faces": int(enrolled.sum()),
            "unknown_faces": int((~enrolled).sum()),
        }

    # ------------------------------------------------------------------------------------ saving
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickles) for an .npz: codes, owner index per code, names, settings."""
        gallery = self._codes
        names = list(gallery)
        d = self.code_size or 0
        codes = np.concatenate([gallery[n] for n in names]) if names else np.zeros((0, d), np.float32)
        owners = np.concatenate([np.full(len(gallery[n]), i, np.int64) for i, n in enumerate(names)]) \
            if names else np.zeros(0, np.int64)
        return {
            "gallery_codes": codes.astype(np.float32),
            "gallery_owners": owners,
            "gallery_names": np.asarray(names, dtype=np.str_),
            "gallery_settings": np.asarray([self.metric, self.mode], dtype=np.str_),
            "gallery_numbers": np.asarray([self.k, self.threshold, self.image_size], np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], embed: Embed | None = None,
                    code_size: int | None = None) -> Gallery:
        """Rebuild a gallery from `to_arrays` output; `code_size` (the model's D) is checked against it."""
        missing = [k for k in ("gallery_codes", "gallery_owners", "gallery_names", "gallery_settings",
                               "gallery_numbers") if k not in arrays]
        if missing:
            raise FaceLabError(f"the saved gallery is incomplete (missing {', '.join(missing)})")
        settings, numbers = np.asarray(arrays["gallery_settings"]), np.asarray(arrays["gallery_numbers"])
        codes, owners = np.asarray(arrays["gallery_codes"]), np.asarray(arrays["gallery_owners"])
        names = np.asarray(arrays["gallery_names"])
        # Arrays from elsewhere: every shape and type is checked before anything is built from them.
        if settings.shape != (2,) or settings.dtype.kind != "U" or numbers.shape != (3,) \
                or numbers.dtype.kind not in "iuf" or np.isnan(numbers.astype(np.float64)).any() \
                or not 1 <= numbers[0] < 1e6 or not 8 <= numbers[2] <= 4096:  # k, threshold (inf: none), side
            raise FaceLabError("the saved gallery is corrupt: its settings are malformed")
        if codes.ndim != 2 or codes.dtype.kind not in "iuf" or owners.shape != (len(codes),) \
                or owners.dtype.kind not in "iu" or names.ndim != 1 or names.dtype.kind != "U":
            raise FaceLabError("the saved gallery is corrupt: its codes, owners or names are malformed")
        metric, mode = (str(s) for s in settings)
        k, threshold, image_size = (float(x) for x in numbers)
        gallery = cls(embed, metric=metric, mode=mode, k=int(k), threshold=threshold, image_size=int(image_size),
                      code_size=code_size)
        codes = codes.astype(np.float32)
        names = [str(n) for n in names]
        if len(owners) and (owners.min() < 0 or owners.max() >= len(names)):
            raise FaceLabError("the saved gallery is corrupt: codes and their owners do not match")
        if code_size is not None and len(codes) and codes.shape[1] != code_size:
            raise FaceLabError(f"code-size mismatch: the gallery holds {codes.shape[1]}-number codes but the "
                               f"model makes {code_size}-number codes; re-enrol the people with this model")
        for i, name in enumerate(names):
            gallery.enrol_codes(name, codes[owners == i])
        return gallery

    def changes_since(self, earlier: Gallery) -> tuple[dict[str, np.ndarray], list[str]]:
        """What changed from `earlier` to this gallery: people added or enrolled again (with all their codes now),
        and people removed."""
        now, then = self._codes, earlier._codes
        changed = {n: c for n, c in now.items() if n not in then or not np.array_equal(then[n], c)}
        return changed, [n for n in then if n not in now]

    def apply_changes(self, changed: dict[str, np.ndarray], removed: list[str]) -> None:
        """Take over `changes_since` of another gallery of the same model: their codes replace a person's own."""
        for codes in changed.values():
            self._check_code_size(codes.shape[1])
        with self._lock:
            new = {n: changed.get(n, c) for n, c in self._codes.items() if n not in removed}
            new.update({n: c for n, c in changed.items() if n not in new})
            self._codes = new

    def copy(self, embed: Embed | None = None) -> Gallery:
        """An independent copy (own people and codes) sharing the embedding function, or using `embed`."""
        new = Gallery(embed if embed is not None else self.embed, self.metric, self.mode, self.k, self.threshold,
                      self.image_size, self._expected)
        new.calibration = self.calibration
        new._codes = {n: c.copy() for n, c in self._codes.items()}
        return new

    def __deepcopy__(self, memo: dict) -> Gallery:
        # The embedding (a model) is shared, never copied; the lock is per object.
        return self.copy()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- internals
    def _prepare(self, faces: np.ndarray | list[np.ndarray]) -> np.ndarray:
        return as_faces(faces, self.image_size)

    def _embed(self, faces: np.ndarray) -> np.ndarray:
        if self.embed is None:
            raise FaceLabError("this gallery has no embedding function: attach a model before enrolling faces")
        codes = np.asarray(self.embed(faces), np.float32)
        if codes.ndim != 2 or len(codes) != len(faces):
            raise FaceLabError(f"the embedding returned shape {codes.shape} for {len(faces)} faces")
        self._check_code_size(codes.shape[1])
        return codes

    def _check_code_size(self, d: int, gallery: dict[str, np.ndarray] | None = None) -> None:
        gallery = self._codes if gallery is None else gallery
        have = next(iter(gallery.values())).shape[1] if gallery else self._expected
        if have is not None and d != have:
            raise FaceLabError(f"code-size mismatch: the gallery holds {have}-number codes but got {d}-number "
                               "codes; was it made with a different model? Re-enrol the people with this model")


def threshold_choices(calibrated: float, top: float) -> tuple[list[float], float]:
    """The distance thresholds offered to a user, ascending, and the one to start on.

    0, steps of 9% (2^(1/8)) from 1/8 of the calibrated value up to `top`, that value (to 4 significant digits, the
    start) and `top`; without calibration (inf), 100 even steps up to `top`, starting on `top`. Calibrated
    thresholds range from 0.004 (a model trained for a few epochs) to about 0.2 (a trained ae-metric), so a
    linear slider would either hide the calibrated value or step over it.
    """
    if not (math.isfinite(calibrated) and calibrated > 0):  # uncalibrated (inf), or calibrated to name nobody (0)
        linear = sorted({0.0, *(float(f"{top * k / 100:.4g}") for k in range(1, 101))})
        return linear, (0.0 if calibrated == 0 else linear[-1])
    start = float(f"{calibrated:.4g}")
    top = max(top, start)
    steps_up = min(math.ceil(8 * math.log2(top / start)), 400)  # up to `top`, however small the start
    grid = {float(f"{start * 2 ** (k / 8):.3g}") for k in range(-24, steps_up + 1) if k}
    return sorted({0.0, top, start, *(v for v in grid if 0 < v <= top and f"{v:.3g}" != f"{start:.3g}")}), start


def _as_list(faces: Sequence[np.ndarray] | np.ndarray) -> Sequence[np.ndarray] | np.ndarray:
    """A batch of images from a list, an (N, H, W[, C]) array, or one (H, W) / (H, W, 3|4) image."""
    if isinstance(faces, np.ndarray):
        if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] in (3, 4) and faces.shape[0] > 4):
            return faces[None]
        return faces
    return list(faces)


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not name or is_reserved_name(name):
        raise FaceLabError(f"a person needs a name other than {UNKNOWN!r} and the empty string")
    return name


def unit_length(x: np.ndarray) -> np.ndarray:
    """Rows (or a vector) scaled to length 1, as cosine distances see them; a zero row stays zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(N, D) x (M, D) -> (N, M) distances; cosine expects unit rows."""
    if metric == "cosine":
        return np.clip(1.0 - a @ b.T, 0.0, 2.0)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))
