"""Model bundles: one folder holding the `.keras` model, `meta.json` and optional NumPy extras.

Layout of a bundle folder:
    meta.json            {"format": "facelab-bundle", "version": 1, "kind", "config", "names", "input_size",
                          "preprocessing", "data_source", "metrics", "history", "created", "versions",
                          "files": {"model": "model-<stamp>.keras", "extras": "extras-<stamp>.npz" | null}}
    model-<stamp>.keras  the Keras 3 model file
    extras-<stamp>.npz   named arrays (an autoencoder's gallery, ...), loaded with allow_pickle=False

Saving is atomic: the new model and extras are written under fresh names first, then `meta.json` is
replaced in one `os.replace`; a crash before that leaves the previous bundle whole (its meta still
names its own files), and stale files are removed after the switch. A bundle also travels as one
zip file (`export_bundle` / `import_bundle`), checked member by member on the way in.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facelab import __version__
from facelab.errors import BadInputError, FaceLabError
from facelab.zips import extract_entry, open_zip

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "facelab-bundle"
BUNDLE_VERSION = 1
META_FILE = "meta.json"
EXPORT_MAX_BYTES = 2 * 1024**3  # unpacked size limit for an uploaded bundle
EXPORT_MAX_FILES = 8
META_MAX_BYTES = 64 * 2**20


@dataclass
class Bundle:
    """A loaded bundle: the Keras model, its metadata and its extra arrays."""

    model: Any
    meta: dict
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None


def user_folder(text: str | Path) -> Path:
    """A folder as typed, with "~" expanded; "~someone" for a user this machine does not know is a BadInputError."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory."
        raise BadInputError(f"{text}: no such user's home folder") from None


def default_model_dir() -> Path:
    """$FACELAB_MODEL_DIR, else ~/.facelab/models (per user, survives restarts)."""
    return user_folder(os.environ.get("FACELAB_MODEL_DIR") or Path.home() / ".facelab" / "models")


def free_bundle_name(base: str, taken: set[str]) -> str:
    """`base` made safe as a folder name, or `base-2`, `base-3`, ... so that it is none of `taken`."""
    # No leading or trailing dots: "." and ".." name the folder itself and its parent, ".x" a hidden folder.
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
    base = re.sub(r"-*\.{2,}-*", "-", base).strip("-.") or "model"  # "a/../b" reads as a path, not a name
    if base not in taken:
        return base
    i = 2
    while f"{base}-{i}" in taken:
        i += 1
    return f"{base}-{i}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(obj: Any) -> Any:
    """NaN and infinities become None, so meta.json stays strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def library_versions() -> dict[str, str]:
    """Versions worth recording with a model: Python, NumPy, Keras and its backend, FaceLab."""
    import keras

    versions = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__,
                "backend": keras.backend.backend(), "facelab": __version__}
    backend = keras.backend.backend()
    try:
        module = __import__(backend)
        versions[backend] = getattr(module, "__version__", "?")
    except ImportError:
        pass
    return versions


def _write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder and `os.replace`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_bundle_target(path: str | Path) -> None:
    """Refuse, before any work is done, a place where a bundle cannot be saved: a file, a folder holding
    something else, or a folder whose nearest existing parent is not a writable folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: exists and is not a folder; choose another place to save the model")
    if folder.is_dir() and any(folder.iterdir()) and not is_bundle(folder):
        raise BadInputError(f"{folder}: folder is not empty and is not a FaceLab bundle; refusing to write into it")
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{folder}: cannot be created, {parent} is not a writable folder")


def reserve_bundle_folder(folder: str | Path, base: str) -> Path:
    """A new, empty folder for a bundle in `folder`: `base`, or `base-2`, `base-3`, ... whichever does not exist.

    One `mkdir` per try claims the name, so two trainings started at once (two tabs, two pages) never save into
    the same bundle; on a case-insensitive disk "GRU" beside "gru" is refused by the mkdir too.
    """
    parent = Path(folder)
    if parent.exists() and not parent.is_dir():
        raise BadInputError(f"{parent}: is a file, not a folder; choose another model folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError(f"{parent}: cannot create the model folder ({err.strerror or err})") from None
    taken: set[str] = set()
    while True:
        target = parent / free_bundle_name(base, taken)
        try:
            target.mkdir()
            return target
        except FileExistsError:
            taken.add(target.name)
        except OSError as err:
            raise BadInputError(f"{target}: cannot create the bundle folder ({err.strerror or err})") from None


def release_bundle_folder(path: str | Path) -> None:
    """Give back a folder from `reserve_bundle_folder` that no bundle was saved into (it is left if not empty)."""
    try:
        Path(path).rmdir()
    except OSError:
        pass


class BundleChangedError(BadInputError):
    """A save over a bundle that another session or command has saved since this model was loaded from it."""


Origin = tuple[Path, str | None]  # (bundle folder, its save_id) a model was loaded from or last saved to


def bundle_origin(path: str | Path, meta: dict | None = None) -> Origin:
    """The (folder, save_id) of a bundle, to be given back to `save_bundle` when saving over it."""
    folder = Path(path).resolve()
    return folder, (meta if meta is not None else read_meta(folder)).get("save_id")


def _check_unchanged(folder: Path, origin: Origin | None) -> None:
    """Refuse to save over the bundle a model came from when someone saved it since (another session or the CLI
    added a person there): the last save would silently drop that change."""
    if origin is None or folder.resolve() != origin[0] or not is_bundle(folder):
        return
    try:
        now = read_meta(folder).get("save_id")
    except BadInputError:
        return  # not a readable bundle any more: the save replaces nothing of value and says so elsewhere
    if now != origin[1]:
        raise BundleChangedError(f"{folder}: saved by another session or command since this model was loaded from "
                                 "it (a person added or removed there?). Load it again from the Models page and "
                                 "repeat the change, so that neither is lost")


def save_bundle(path: str | Path, keras_model, meta: dict, extras: dict[str, np.ndarray] | None = None,
                origin: Origin | None = None) -> Path:
    """Save a model, its metadata (must include "kind") and extra arrays as a bundle folder, atomically.

    `meta` should carry kind, config, names, input_size, preprocessing, data_source, metrics and history;
    format, version, dates (created: first saved; saved: this save), a save_id, library versions and file names
    are added here. `origin` (`bundle_origin` of where the model came from) refuses to overwrite that bundle if it
    changed since, and keeps its creation date when it did not. Returns the folder.
    """
    if not meta.get("kind"):
        raise FaceLabError("bundle metadata needs a 'kind'")
    folder = Path(path)
    check_bundle_target(folder)
    _check_unchanged(folder, origin)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError(f"{folder}: cannot create the bundle folder ({err.strerror or err})") from None
    old_files, created = set(), None
    if is_bundle(folder):
        try:
            old = read_meta(folder)
            old_files = {f for f in old.get("files", {}).values() if f}
            if origin is not None and folder.resolve() == origin[0]:
                created = old.get("created")  # the same model saved again (a person added): keeps its date
        except BadInputError:
            old_files = set()

    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**6}"
    model_name = f"model-{stamp}.keras"
    extras_name = f"extras-{stamp}.npz" if extras else None
    written = []
    try:
        # Keras picks the format from the suffix, so the temporary name must end in .keras too.
        tmp_model = folder / f".tmp-{model_name}"
        written.append(tmp_model)  # before the save: one that fails halfway leaves a partial file
        keras_model.save(tmp_model)
        os.replace(tmp_model, folder / model_name)
        written.append(folder / model_name)
        if extras_name:
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in extras.items()})
            _write_atomic(folder / extras_name, buf.getvalue())
            written.append(folder / extras_name)
        full = dict(meta)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        full.update(format=BUNDLE_FORMAT, version=BUNDLE_VERSION, save_id=uuid.uuid4().hex,
                    created=created if isinstance(created, str) else now, saved=now,
                    versions=library_versions(), files={"model": model_name, "extras": extras_name})
        text = json.dumps(_finite(full), indent=2, default=_json_default, allow_nan=False).encode()
        _write_atomic(folder / META_FILE, text)  # the commit point
    except BaseException as err:
        for f in written:
            f.unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, a folder removed meanwhile: the previous bundle is intact
            raise BadInputError(f"{folder}: cannot save the model ({err.strerror or err})") from None
        raise
    for name in old_files - {model_name, extras_name}:
        (folder / name).unlink(missing_ok=True)
    log.info("saved %s bundle to %s", meta["kind"], folder)
    return folder


def read_meta(path: str | Path) -> dict:
    """The metadata of a bundle folder, checked; raises BadInputError for anything that is not a bundle."""
    folder = Path(path)
    if not folder.exists():
        raise BadInputError(f"{folder}: no such model bundle")
    if not folder.is_dir():
        hint = " (a zip export: import it first)" if zipfile.is_zipfile(folder) else ""
        raise BadInputError(f"{folder}: not a FaceLab model bundle; a bundle is a folder with {META_FILE}{hint}")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise BadInputError(f"{folder}: not a FaceLab model bundle (no {META_FILE})")
    if meta_path.stat().st_size > META_MAX_BYTES:
        raise BadInputError(f"{meta_path}: {META_FILE} is too large to be bundle metadata")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON (both decode errors are ValueErrors)
        why = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise BadInputError(f"{meta_path}: unreadable bundle metadata ({why})") from None
    except RecursionError:  # lists nested thousands deep: no bundle looks like that
        raise BadInputError(f"{meta_path}: unreadable bundle metadata (nested too deep)") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BadInputError(f"{folder}: not a FaceLab model bundle ({META_FILE} lacks format {BUNDLE_FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > BUNDLE_VERSION:
        raise BadInputError(f"{folder}: bundle format version {meta.get('version')!r} is newer than this FaceLab "
                            f"understands ({BUNDLE_VERSION})")
    files = meta.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("model"), str) or not meta.get("kind"):
        raise BadInputError(f"{folder}: bundle metadata is incomplete (kind or model file missing)")
    for name in files.values():  # every one, since export copies them all
        if name is not None and (not isinstance(name, str) or Path(name).name != name or name.startswith(".")):
            raise BadInputError(f"{folder}: bundle metadata names an unsafe file {name!r}")
    bad = _malformed_fields(meta)
    if bad:
        raise BadInputError(f"{folder}: bundle metadata has malformed fields ({', '.join(bad)}); not a bundle FaceLab "
                            "wrote")
    return meta


def is_number(value: object) -> bool:
    """An int or float that is not a bool (JSON's true/false load as bools, which are ints in Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def _is_metrics(value: object, names: object) -> bool:
    """Scalars as numbers (or null), the confusion matrix square and as wide as its names, per-person figures."""
    if not isinstance(value, dict):
        return False
    confusion, labels = value.get("confusion"), value.get("confusion_names", names)
    if confusion is not None and not (
            isinstance(confusion, list) and isinstance(labels, list) and len(confusion) == len(labels)
            and all(isinstance(r, list) and len(r) == len(confusion) and all(map(is_number, r)) for r in confusion)):
        return False
    per_person = value.get("per_person")  # accuracies; the first bundles wrote {"accuracy": a, "faces": n}
    if per_person is not None and not (isinstance(per_person, dict) and all(
            is_number(v) or (isinstance(v, dict) and is_number(v.get("accuracy"))) for v in per_person.values())):
        return False
    return all(v is None or is_number(v) or isinstance(v, bool) for k, v in value.items()
               if k not in ("confusion", "confusion_names", "per_person")) \
        and _is_names(value.get("confusion_names", []))


def _malformed_fields(meta: dict) -> list[str]:
    """The fields of bundle metadata whose type is not the one FaceLab writes (a missing one is fine, and so is
    null where readers fall back to a default)."""
    checks = {
        "kind": lambda v: isinstance(v, str),
        "names": _is_names,
        "train_names": _is_names,
        "calibration_people": _is_names,
        "fit_seconds": is_number,
        "best_epoch": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "gallery": lambda v: isinstance(v, dict) and (v.get("calibration") is None or (
            isinstance(v["calibration"], dict) and all(x is None or is_number(x) for x in v["calibration"].values()))),
        "created": lambda v: isinstance(v, str),
        "data_source": lambda v: isinstance(v, str),
        "config": lambda v: isinstance(v, dict),
        "metrics": lambda v: _is_metrics(v, meta.get("names")),
        "training": lambda v: isinstance(v, dict),
        "input_size": lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(n) and n >= 1 for n in v),
        "history": lambda v: isinstance(v, dict) and all(
            isinstance(k, str) and isinstance(c, list) and all(x is None or is_number(x) for x in c) for k, c in v.items()),
    }
    required = ("kind", "names", "input_size")  # read without a fallback
    return [key for key, ok in checks.items()
            if key in meta and (meta[key] is not None or key in required) and not ok(meta[key])]


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder: Keras model (safe mode on, not compiled), metadata and extras.

    Custom layers must be registered before loading: `facelab.registry.load_model` imports the
    kind's module first, which is the usual way in.
    """
    import keras

    folder = Path(path)
    meta = read_meta(folder)
    model_path = folder / meta["files"]["model"]
    if not model_path.is_file():
        raise BadInputError(f"{folder}: bundle is missing its model file {model_path.name}")
    if not zipfile.is_zipfile(model_path):
        raise BadInputError(f"{model_path}: not a Keras model file (corrupt or truncated)")
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad file; all mean "cannot use this bundle"
        raise BadInputError(f"{model_path}: the model could not be loaded ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:300] if str(err) else 'no detail'})") from None
    extras: dict[str, np.ndarray] = {}
    if meta["files"].get("extras"):
        extras_path = folder / meta["files"]["extras"]
        try:
            with np.load(extras_path, allow_pickle=False) as npz:
                extras = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            if "pickle" in str(err):  # numpy's own advice, to load it unsafely, is not for a FaceLab user
                raise BadInputError(f"{extras_path}: bundle extras hold pickled Python objects, which FaceLab never "
                                    "loads (FaceLab does not write them: a file from elsewhere?)") from None
            raise BadInputError(f"{extras_path}: bundle extras could not be read ({err})") from None
    return Bundle(model, meta, extras, folder)


def list_bundles(folder: str | Path, damaged: list[tuple[str, str]] | None = None) -> list[dict]:
    """Bundles directly inside `folder`, newest first: path, name, kind, created, people, metrics, data_source,
    history (per-epoch training curves). Folders with a meta.json that does not read as a bundle's are left out;
    `damaged`, when given, gets (folder name, why) for each."""
    root = Path(folder)
    try:
        subs = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as err:  # no permission: the folder is listed as unreadable, not a traceback on every page
        if damaged is not None:
            damaged.append((root.name, f"the folder cannot be read ({err.strerror or err})"))
        return []
    found = []
    for sub in subs:
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        try:
            meta = read_meta(sub)
        except BadInputError as err:
            if damaged is not None and (sub / META_FILE).exists():
                damaged.append((sub.name, str(err).replace(f"{sub}: ", "").replace(str(sub), sub.name)))
            continue
        found.append({"path": sub, "name": sub.name, "kind": meta["kind"], "created": meta.get("created") or "",
                      "people": len(meta.get("names") or []), "metrics": meta.get("metrics") or {},
                      "data_source": meta.get("data_source") or "", "history": meta.get("history") or {}})
    return sorted(found, key=lambda b: b["created"], reverse=True)


def is_bundle(path: str | Path) -> bool:
    """Whether `path` is a folder holding bundle metadata (readable or not): something saving must not replace
    unasked."""
    return (Path(path) / META_FILE).is_file()


def delete_bundle(path: str | Path) -> None:
    """Delete a bundle folder; refuses folders that are not bundles."""
    folder = Path(path)
    read_meta(folder)
    shutil.rmtree(folder)


def export_bundle(path: str | Path, dest: str | Path | None = None) -> bytes:
    """A bundle as one zip (bytes for a download); also written atomically to `dest` when given."""
    folder = Path(path)
    meta = read_meta(folder)
    buf = io.BytesIO()
    try:
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.write(folder / META_FILE, META_FILE)
            for name in meta["files"].values():
                if name:
                    zf.write(folder / name, name)
    except OSError as err:  # a file the metadata names is gone or unreadable
        raise BadInputError(f"{folder}: cannot export the bundle ({err.strerror or err}: {err.filename})") from None
    data = buf.getvalue()
    if dest is not None:
        _write_atomic(Path(dest), data)
    return data


def import_bundle(source: str | Path | bytes, dest: str | Path, name: str = "upload",
                  check: Callable[[Path], Any] | None = None) -> Path:
    """Unpack an exported bundle zip (path or bytes) into the folder `dest`, checking it on the way.

    Only flat members named in its meta.json are accepted, within size limits; the result must load
    as bundle metadata, and pass `check(folder)` (which raises FaceLabError) when given. Replaces `dest`
    only once the new bundle is complete and checked.
    """
    label = Path(source).name if isinstance(source, (str, Path)) else name
    dest = Path(dest)
    with open_zip(source, label, "not a FaceLab model export, not a readable zip") as archive:
        members = {m.filename: m for m in archive.infolist()}
        if META_FILE not in members:
            raise BadInputError(f"{label}: not a FaceLab model export (no {META_FILE} inside)")
        if len(members) > EXPORT_MAX_FILES or sum(m.file_size for m in members.values()) > EXPORT_MAX_BYTES:
            raise BadInputError(f"{label}: too many or too large files for a FaceLab model export")
        for m in members.values():
            if "/" in m.filename or "\\" in m.filename or m.filename.startswith("."):
                raise BadInputError(f"{label}: unexpected entry {m.filename!r}; a model export is flat")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import-", dir=dest.parent))
        try:
            try:
                written = extract_entry(archive, members[META_FILE], tmp / META_FILE, label, EXPORT_MAX_BYTES)
                meta = read_meta(tmp)
                wanted = {n for n in meta["files"].values() if n}
                missing = wanted - members.keys()
                if missing:
                    raise BadInputError(f"{label}: the export lacks {', '.join(sorted(missing))}")
                for member in wanted:
                    written += extract_entry(archive, members[member], tmp / member, label,
                                             EXPORT_MAX_BYTES - written)
                if check is not None:
                    check(tmp)
            except FaceLabError as err:  # name the upload, not the temporary folder it is checked in
                raise BadInputError(str(err).replace(str(tmp), label)) from None
            if dest.exists():
                read_meta(dest)  # only ever replace another bundle
                old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
