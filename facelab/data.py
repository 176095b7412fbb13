"""Face data sources behind one entry point, `load_dataset(spec)`, and per-person seeded splits.

Spec strings (the same in the CLI and the app):
    synthetic[:people=12,per_person=20,seed=0]   offline cartoon faces (the default)
    olivetti[:DIR]                                AT&T/Olivetti faces; DIR or $FACELAB_OLIVETTI_DIR holds
                                                  faces.npy+labels.npy or olivettifaces.mat, else scikit-learn's cache
    lfw[:min_faces=20]                            Labeled Faces in the Wild via scikit-learn's cache ($FACELAB_DATA_HOME)
    PATH/                                         a folder with one sub-folder per person
    PATH.zip                                      a zip of such a folder
    PATH.csv                                      a FER2013 CSV (emotion,pixels,Usage)

A folder image whose sides are both at most `CROP_MAX_SIDE` pixels is taken as a face crop and used
whole (AT&T `s1/1.pgm` is 92x112, Olivetti 64x64); a larger image is a photo, in which exactly one
face must be found: photos with none or several are skipped and reported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facelab import FACE_SIZE
from facelab.errors import BadInputError, FaceLabError
from facelab.images import IMAGE_SUFFIXES, read_image
from facelab.preprocess import FaceDetector, faces_in_image, to_face
from facelab.recognition import is_reserved_name
from facelab.zips import extract_entry, open_zip

log = logging.getLogger(__name__)

ZIP_MAX_BYTES = 1024**3  # unpacked size limit
ZIP_MAX_FILES = 50_000
MIN_FACE_SIZE, MAX_FACE_SIZE = 8, 512  # face sides a data set can be loaded at (the models take 16..256)
ZIP_MAX_RATIO = 200  # a member that unpacks to 200x its packed size is a zip bomb, not a photo
FER_EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
# FER2013 has 35,887 rows; at 64x64 float32 faces 100,000 rows take 1.6 GB. A file of nothing but bad rows is
# refused after 1,000 of them, and only the first 200 skipped rows are listed (the rest are counted).
FER_MAX_ROWS, FER_MAX_BAD_LEAD, FER_LISTED_SKIPS = 100_000, 1_000, 200
SYNTHETIC_MAX_FACES = 20_000  # 330 MB of 64x64 faces
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SkippedFile:
    """A file (or person) left out of a dataset, and why."""

    path: str
    reason: str


@dataclass
class FaceDataset:
    """Faces with integer labels into `names`; `source` says where they came from."""

    images: np.ndarray  # (N, S, S) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64, index into names
    names: list[str]
    source: str
    skipped: list[SkippedFile] = field(default_factory=list)
    usage: np.ndarray | None = None  # (N,) "train"/"val"/"test" where the source fixes the split
    paths: list[str] | None = None  # file of each image, where there is one
    label_kind: str = "person"  # what a name stands for: a person, or an "expression" (FER2013)

    @property
    def label_plural(self) -> str:
        """"people", or the plural of `label_kind` ("expressions"), for labels on screen."""
        return "people" if self.label_kind == "person" else f"{self.label_kind}s"

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def n_people(self) -> int:
        return len(self.names)

    @property
    def face_names(self) -> list[str]:
        """Who each image shows, by name."""
        return [self.names[i] for i in self.labels]

    def counts(self) -> dict[str, int]:
        """Images per person, in label order."""
        per = np.bincount(self.labels, minlength=len(self.names))
        return {name: int(n) for name, n in zip(self.names, per)}

    def subset(self, index: np.ndarray) -> FaceDataset:
        """The images at `index`, keeping every name (labels keep their meaning)."""
        index = np.asarray(index, dtype=np.int64)
        return replace(
            self, images=self.images[index], labels=self.labels[index], skipped=[],
            usage=None if self.usage is None else self.usage[index],
            paths=None if self.paths is None else [self.paths[i] for i in index],
        )

    def first_per_person(self, names: list[str], n: int) -> np.ndarray:
        """The indices of the first `n` images of each of `names`, person by person."""
        return np.array([i for name in names for i in np.flatnonzero(self.labels == self.names.index(name))[:n]],
                        np.int64)

    def sample(self, n: int, seed: int = 0) -> FaceDataset:
        """At most `n` images drawn at random (seeded), in their original order."""
        n = max(0, min(int(n), len(self.images)))
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self.images), n, replace=False)))

    def summary(self) -> dict:
        """JSON-ready description: people, image count, image size, skipped files."""
        return {
            "source": self.source,
            "people": list(self.names),
            "images": int(len(self.images)),
            "image_size": list(self.image_size),
            "counts": self.counts(),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


@dataclass
class DataSplit:
    """Train, validation (for model selection) and test (for reporting only) parts of one dataset."""

    train: FaceDataset
    val: FaceDataset
    test: FaceDataset


def split_dataset(ds: FaceDataset, train_per_person: int = 5, val_per_person: int = 1, seed: int = 0) -> DataSplit:
    """K = `train_per_person` images per person for training (of which `val_per_person` are held for
    validation), the rest for test; seeded. A source with its own split (FER2013 `Usage`) keeps it.
    """
    if ds.usage is not None:
        return DataSplit(*(ds.subset(np.flatnonzero(ds.usage == part)) for part in ("train", "val", "test")))
    if train_per_person < 1:
        raise FaceLabError("train_per_person must be at least 1")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    # scikit-learn's stratified splits give proportions, not a fixed K per person; this is that protocol.
    for label in range(len(ds.names)):
        idx = rng.permutation(np.flatnonzero(ds.labels == label))
        if len(idx) == 0:
            continue
        k = min(train_per_person, len(idx) - 1) if len(idx) > 1 else len(idx)
        v = min(val_per_person, max(k - 1, 0))
        val.extend(idx[:v])
        train.extend(idx[v:k])
        test.extend(idx[k:])
    return DataSplit(*(ds.subset(np.sort(np.asarray(part, np.int64))) for part in (train, val, test)))


# ---------------------------------------------------------------------------------------------- specs

NAMED_SOURCES = ("synthetic", "olivetti", "lfw")
SPEC_OPTIONS = {"synthetic": ("people", "per_person", "seed"), "olivetti": ("dir",), "lfw": ("min_faces", "data_home")}


def load_upload(name: str, data: bytes, image_size: int = FACE_SIZE, progress: Progress | None = None) -> FaceDataset:
    """An uploaded .zip or .csv (its bytes), written to a temporary file and loaded like a path."""
    # Named after the upload, so messages and the data source name the user's file, not a temp name.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "upload"
    with tempfile.TemporaryDirectory(prefix="facelab-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        return load_dataset(str(path), image_size=image_size, progress=progress)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """`name:arg` or `name:key=value,...` or a path -> (kind, argument, options)."""
    spec = spec.strip()
    if not spec:  # an empty path would be the current folder
        raise BadInputError(f"no data source given; choose one of {', '.join(NAMED_SOURCES)}, a folder, a .zip or a "
                            "FER2013 .csv")
    head, _, rest = spec.partition(":")
    if head.lower() in NAMED_SOURCES:
        options = dict(part.split("=", 1) for part in rest.split(",") if "=" in part) if "=" in rest else {}
        return head.lower(), "" if options else rest, options
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".zip":
        return "zip", str(path), {}
    if path.suffix.lower() == ".csv":
        return "fer2013", str(path), {}
    return "folder", str(path), {}


def load_dataset(spec: str = "synthetic", image_size: int = FACE_SIZE, progress: Progress | None = None) -> FaceDataset:
    """Load any source spec (see the module docstring) as a `FaceDataset` of (image_size)^2 faces."""
    if not MIN_FACE_SIZE <= image_size <= MAX_FACE_SIZE:
        raise BadInputError(f"face size {image_size} is outside {MIN_FACE_SIZE}..{MAX_FACE_SIZE} pixels")
    kind, arg, opts = parse_spec(spec)
    unknown = sorted(set(opts) - set(SPEC_OPTIONS.get(kind, ())))
    if unknown:  # a typo would otherwise be ignored silently
        raise BadInputError(f"unknown option(s) {', '.join(unknown)} in data spec {spec!r}; {kind} takes "
                            f"{', '.join(SPEC_OPTIONS[kind])}")
    try:
        if kind == "synthetic":
            return load_synthetic(int(opts.get("people", 12)), int(opts.get("per_person", 20)),
                                  int(opts.get("seed", 0)), image_size)
        if kind == "olivetti":
            return load_olivetti(arg or opts.get("dir") or None, image_size)
        if kind == "lfw":
            return load_lfw(int(opts.get("min_faces", arg or 20)), opts.get("data_home"), image_size)
    except ValueError as err:
        raise BadInputError(f"bad option in data spec {spec!r}: {err}") from None
    if kind == "zip":
        return load_zip(arg, image_size, progress)
    if kind == "fer2013":
        return load_fer2013(arg, image_size)
    return load_folder(arg, image_size, progress=progress)


def source_version(spec: str) -> str:
    """A fingerprint of the files behind a path spec (names, sizes, modification times); "" for named sources.

    A cache keyed on it loads a folder, zip or CSV again once its files change, and only then.
    """
    kind, arg, _ = parse_spec(spec)
    if kind in NAMED_SOURCES:
        return ""
    root = Path(arg)
    entries = []
    try:
        if root.is_dir():
            for folder, dirs, files in os.walk(root):  # links to folders are not followed: no loops
                dirs.sort()
                for name in sorted(files):
                    path = Path(folder) / name
                    stat = os.stat(path, follow_symlinks=False)  # a dangling link has a stat of its own
                    entries.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
        else:
            stat = root.stat()
            entries.append((root.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return ""
    return hashlib.sha1(repr(entries).encode()).hexdigest()


def load_synthetic(people: int = 12, per_person: int = 20, seed: int = 0, image_size: int = FACE_SIZE) -> FaceDataset:
    """Deterministic synthetic faces (see `facelab.synthetic`)."""
    from facelab.synthetic import synthetic_faces

    if people < 2 or per_person < 2:
        raise BadInputError("the synthetic set needs at least 2 people with 2 images each")
    if people * per_person > SYNTHETIC_MAX_FACES:  # 100,000 x 100,000 used to fill the memory
        raise BadInputError(f"the synthetic set makes at most {SYNTHETIC_MAX_FACES} faces; {people} people x "
                            f"{per_person} asks for {people * per_person}")
    images, labels, names = synthetic_faces(people, per_person, seed, image_size)
    return FaceDataset(images, labels, names, f"synthetic (seed {seed}, {people} people)")


def load_olivetti(data_dir: str | Path | None = None, image_size: int = FACE_SIZE) -> FaceDataset:
    """Olivetti faces: 40 people x 10 images, from a local folder or scikit-learn's download cache."""
    data_dir = data_dir or os.environ.get("FACELAB_OLIVETTI_DIR")
    if data_dir:
        images, labels = _olivetti_from_folder(Path(data_dir))
        source = f"olivetti ({data_dir})"
    else:
        from sklearn.datasets import fetch_olivetti_faces

        try:
            bunch = fetch_olivetti_faces(data_home=os.environ.get("FACELAB_DATA_HOME"))
        except OSError as err:  # URLError is an OSError: no network and no cache
            raise FaceLabError(
                f"Olivetti faces are not cached and could not be downloaded ({err}). Put faces.npy and labels.npy "
                "or olivettifaces.mat in a folder and use 'olivetti:FOLDER' or set FACELAB_OLIVETTI_DIR."
            ) from None
        images, labels = bunch.images, bunch.target
        source = "olivetti (scikit-learn cache)"
    people, labels = np.unique(labels, return_inverse=True)  # person numbers as stored, labels 0..n-1
    faces = _resize_all(images.astype(np.float32), image_size)
    return FaceDataset(faces, labels.astype(np.int64), [f"person-{p + 1:02d}" for p in people], source)


def _olivetti_from_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(faces in [0, 1], person numbers) from faces.npy (+ labels.npy) or olivettifaces.mat; without labels, the
    file's order is 10 faces per person."""
    if not folder.is_dir():
        raise BadInputError(f"{folder}: no such folder" if not folder.exists() else f"{folder} is a file, not a folder")
    if (folder / "faces.npy").is_file():
        where = folder / "faces.npy"
        try:
            faces = np.load(where, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:  # pickled, truncated or not an .npy file
            raise BadInputError(f"{where}: not a readable array file ({err})") from None
    elif (folder / "olivettifaces.mat").is_file():
        from scipy.io import loadmat

        where = folder / "olivettifaces.mat"
        try:
            mat = loadmat(where)["faces"]  # (4096, 400), column-major images
            faces = mat.T.reshape(-1, 64, 64).transpose(0, 2, 1)
        except (OSError, ValueError, KeyError, TypeError, NotImplementedError) as err:
            raise BadInputError(f"{where}: not the Olivetti .mat file (a 4096 x N 'faces' array): {err}") from None
    else:
        raise FaceLabError(f"{folder}: no faces.npy or olivettifaces.mat here")
    if faces.ndim != 3 or len(faces) < 2 or min(faces.shape[1:]) < 1 or not np.issubdtype(faces.dtype, np.number):
        raise BadInputError(f"{where}: expected N square grey faces (N x H x W numbers), got shape {faces.shape}")
    faces = faces.astype(np.float32)
    if faces.size and (not np.isfinite(faces).all() or faces.min() < 0):
        raise BadInputError(f"{where}: pixel values must be finite and not negative")
    if faces.max() > 1.5:  # 0..255, whatever the type
        faces /= 255.0
    labels = np.arange(len(faces), dtype=np.int64) // 10
    if (folder / "labels.npy").is_file():
        try:
            labels = np.load(folder / "labels.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise BadInputError(f"{folder / 'labels.npy'}: not a readable array file ({err})") from None
        if labels.shape != (len(faces),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise BadInputError(f"{folder / 'labels.npy'}: expected {len(faces)} person numbers (whole numbers from "
                                f"0), one per face, got {labels.dtype} of shape {labels.shape}")
    return faces, labels


def load_lfw(min_faces: int = 20, data_home: str | None = None, image_size: int = FACE_SIZE,
             download: bool = True) -> FaceDataset:
    """Labeled Faces in the Wild via scikit-learn (downloaded once into its cache), people with >= min_faces."""
    from sklearn.datasets import fetch_lfw_people

    data_home = data_home or os.environ.get("FACELAB_DATA_HOME")
    try:
        lfw = fetch_lfw_people(min_faces_per_person=min_faces, resize=1.0, data_home=data_home,
                               download_if_missing=download)
    except ValueError:  # scikit-learn: "min_faces_per_person=100 is too restrictive"
        raise BadInputError(f"LFW: fewer than 2 people have {min_faces} or more images here; lower the minimum") from None
    except OSError as err:
        raise FaceLabError(
            f"LFW is not in the local cache ({data_home or 'scikit-learn default'}) and could not be downloaded "
            f"({err}). Connect once to download it, or set FACELAB_DATA_HOME to a folder that holds lfw_home/."
        ) from None
    if len(lfw.target_names) < 2:
        raise BadInputError(f"LFW has fewer than 2 people with at least {min_faces} images")
    images = lfw.images  # (N, 125, 94) float32 in [0, 1] (scikit-learn >= 1.6) or [0, 255]
    if images.max() > 1.5:
        images = images / 255.0
    height, width = images.shape[1:]
    top = (height - width) // 2  # square crop around the face centre
    faces = _resize_all(images[:, top: top + width, :].astype(np.float32), image_size)
    return FaceDataset(faces, lfw.target.astype(np.int64), [str(n) for n in lfw.target_names],
                       f"lfw (min {min_faces} faces per person)")


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:] == (size, size):
        return images.astype(np.float32)
    return np.stack([to_face(img, size) for img in images])


# ------------------------------------------------------------------------------ folders, zips, CSVs


def load_folder(path: str | Path, image_size: int = FACE_SIZE, source: str | None = None,
                progress: Progress | None = None) -> FaceDataset:
    """A folder with one sub-folder per person; photos are face-detected, crops used whole."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise BadInputError(f"{root}: not a folder, a .zip or a FER2013 .csv")
    if not root.is_dir():
        raise BadInputError(f"{root}: no such folder")
    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if not people:
        raise BadInputError(f"{root}: no sub-folders; put each person's images in a folder named after them")
    files = [(person, f) for person in people for f in sorted(person.iterdir())
             if f.is_file() and not f.name.startswith(".")]
    detector = FaceDetector()
    skipped: list[SkippedFile] = []
    per_person: dict[str, list[tuple[np.ndarray, str]]] = {p.name: [] for p in people}
    for i, (person, file) in enumerate(files):
        rel = str(file.relative_to(root))
        if progress:
            progress(i / max(len(files), 1), rel)
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(SkippedFile(rel, f"not an image file type ({file.suffix or 'no extension'})"))
            continue
        try:
            img = read_image(file, name=rel)
        except BadInputError as err:
            skipped.append(SkippedFile(rel, str(err).removeprefix(f"{rel}: ")))
            continue
        found = faces_in_image(img, detector, image_size)
        if len(found) != 1:
            skipped.append(SkippedFile(rel, "no face found" if not found else f"{len(found)} faces found; expected one"))
            continue
        per_person[person.name].append((found[0].face, rel))
    return _assemble(per_person, skipped, source or f"folder {root}", image_size)


def _assemble(per_person: dict[str, list[tuple[np.ndarray, str]]], skipped: list[SkippedFile], source: str,
              image_size: int) -> FaceDataset:
    names, faces, labels, paths = [], [], [], []
    for name, items in per_person.items():
        if is_reserved_name(name):  # it would read as "nobody known" in every answer
            skipped.append(SkippedFile(name + "/", f"{name!r} is the answer for faces nobody knows, not a person's "
                                                   "name; rename the folder to use its images"))
            continue
        if len(items) < 2:
            skipped.append(SkippedFile(name + "/", f"person {name!r} has {len(items)} usable image(s); at least 2 are needed"))
            continue
        for face, rel in items:
            faces.append(face)
            labels.append(len(names))
            paths.append(rel)
        names.append(name)
    if len(names) < 2:
        detail = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        raise BadInputError(
            f"{source}: needs at least 2 people with at least 2 usable images each, found {len(names)}"
            + (f" (skipped: {detail})" if detail else "")
        )
    return FaceDataset(np.stack(faces).reshape(-1, image_size, image_size), np.asarray(labels, np.int64), names,
                       source, skipped, paths=paths)


def safe_extract_zip(zip_path: str | Path, dest: Path) -> None:
    """Extract a zip refusing absolute paths, `..`, links, too many files and zip bombs."""
    label = Path(zip_path).name
    with open_zip(zip_path, label) as archive:
        members = archive.infolist()
        if len(members) > ZIP_MAX_FILES:
            raise BadInputError(f"zip holds {len(members)} files; the limit is {ZIP_MAX_FILES}")
        total = sum(m.file_size for m in members)
        if total > ZIP_MAX_BYTES:
            raise BadInputError(f"zip unpacks to {total / 2**20:.0f} MiB; the limit is {ZIP_MAX_BYTES // 2**20} MiB")
        dest = dest.resolve()
        for m in members:
            target = (dest / m.filename).resolve()
            if m.filename.startswith(("/", "\\")) or ".." in Path(m.filename).parts or not target.is_relative_to(dest):
                raise BadInputError(f"zip entry {m.filename!r} points outside the archive's folder; refused")
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                raise BadInputError(f"zip entry {m.filename!r} is a symbolic link; refused")
            if m.file_size > ZIP_MAX_RATIO * max(m.compress_size, 1) and m.file_size > 10 * 2**20:
                raise BadInputError(f"zip entry {m.filename!r} unpacks to {m.file_size / 2**20:.0f} MiB from "
                                    f"{m.compress_size / 2**10:.0f} KiB; refused as a zip bomb")
        written = 0
        for m in members:
            if not m.is_dir():
                written += extract_entry(archive, m, dest / m.filename, label, ZIP_MAX_BYTES - written)


def load_zip(zip_path: str | Path, image_size: int = FACE_SIZE, progress: Progress | None = None) -> FaceDataset:
    """A zip of a one-sub-folder-per-person folder (a single wrapping folder is allowed)."""
    name = Path(zip_path).name
    with tempfile.TemporaryDirectory(prefix="facelab-zip-") as tmp:
        root = Path(tmp)
        safe_extract_zip(zip_path, root)
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        while len(entries) == 1 and entries[0].is_dir() and not any(f.is_file() for f in entries[0].iterdir()):
            root = entries[0]
            entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        try:
            return load_folder(root, image_size, source=f"zip {name}", progress=progress)
        except FaceLabError as err:  # name the upload, not the temporary folder it was unpacked in
            raise type(err)(str(err).replace(str(Path(tmp)), name)) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def load_fer2013(csv_path: str | Path, image_size: int = FACE_SIZE) -> FaceDataset:
    """FER2013 CSV: 48x48 faces, the seven expressions as classes, `Usage` kept as the split.

    Read row by row: a file of bad rows is refused after `FER_MAX_BAD_LEAD` of them, and one with more than
    `FER_MAX_ROWS` rows is refused, instead of filling the memory; the first `FER_LISTED_SKIPS` skipped rows are
    listed, the others counted."""
    import csv

    path = Path(csv_path)
    faces, labels, usage, skipped = [], [], [], []
    n_skipped = 0

    def skip(row: int, reason: str) -> None:
        nonlocal n_skipped
        n_skipped += 1
        if len(skipped) < FER_LISTED_SKIPS:
            skipped.append(SkippedFile(f"{path.name} line {row}", reason))

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in ("emotion", "pixels") if c not in header]
            if missing:
                raise BadInputError(f"{path.name}: missing column(s) {', '.join(missing)}; a FER2013 CSV has "
                                    "emotion,pixels,Usage")
            col_emotion, col_pixels = header.index("emotion"), header.index("pixels")
            col_usage = header.index("Usage") if "Usage" in header else None
            for row, fields in enumerate(reader, start=2):
                if row - 1 > FER_MAX_ROWS:
                    raise BadInputError(f"{path.name}: more than {FER_MAX_ROWS} rows; FER2013 has 35,887. Split the "
                                        "file or keep a sample of it")
                if not faces and n_skipped >= FER_MAX_BAD_LEAD:
                    raise BadInputError(f"{path.name}: the first {n_skipped} rows are all unusable, so this is not a "
                                        f"FER2013 CSV ({skipped[0].path}: {skipped[0].reason})")
                if not fields:
                    continue  # a blank line
                try:
                    label = int(fields[col_emotion])
                    values = np.array(fields[col_pixels].split(), dtype=np.float32)
                except (ValueError, IndexError):
                    skip(row, "emotion or pixels are not numbers")
                    continue
                if not 0 <= label < len(FER_EMOTIONS):
                    skip(row, f"emotion {label} is not 0-6")
                    continue
                if values.size != 48 * 48:
                    skip(row, f"{values.size} pixel values; expected 2304 (48x48)")
                    continue
                if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255):
                    skip(row, "pixel values outside 0-255")
                    continue
                faces.append(to_face(values.astype(np.uint8).reshape(48, 48), image_size))
                labels.append(label)
                use = fields[col_usage] if col_usage is not None and col_usage < len(fields) else "Training"
                usage.append(FER_USAGE.get(use.strip(), "train"))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadInputError(f"{path.name}: not a readable CSV file ({err})") from None
    if n_skipped > len(skipped):
        skipped.append(SkippedFile(f"{path.name}: {n_skipped - len(skipped)} more rows", "skipped, not listed"))
    first_skip = f" ({n_skipped} row(s) skipped; {skipped[0].path}: {skipped[0].reason})" if skipped else ""
    if not faces:
        raise BadInputError(f"{path.name}: no usable rows{first_skip}")
    labels_arr = np.asarray(labels, np.int64)
    if len(np.unique(labels_arr)) < 2:
        raise BadInputError(f"{path.name}: needs at least 2 different expressions{first_skip}")
    usage_arr = np.asarray(usage)
    if not (usage_arr == "test").any() or not (usage_arr == "train").any():
        usage_arr = None  # no declared test or training part: fall back to the per-person split
    # Only the expressions that occur: an empty one made the smallest "person" 0 faces, so the split allowed 1
    # training face per expression.
    present = np.unique(labels_arr)
    return FaceDataset(np.stack(faces), np.searchsorted(present, labels_arr), [FER_EMOTIONS[i] for i in present],
                       f"fer2013 {path.name}", skipped, usage_arr, label_kind="expression")
