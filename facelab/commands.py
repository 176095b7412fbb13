"""The model commands of `python -m facelab`: `train`, `evaluate`, `identify`, `live`, `capture`,
`enrol` and `models`.

Config flags (`--units`, `--learning-rate`, `--augment/--no-augment`, ...) are generated from the config
dataclasses' fields (`facelab.registry.config_fields`); a flag applies to the kinds whose config has
that field. Kinds are resolved through `facelab.registry`, which imports their modules only when used.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from facelab.errors import BadInputError, FaceLabError
from facelab.registry import CLASSIFIER_KINDS, MODEL_KINDS, ConfigField, config_fields

log = logging.getLogger(__name__)

# `--seed` seeds both the split and training, so the config's own seed field gets no flag of its own.
_NO_FLAG = {"seed"}


def _config_classes() -> list[type]:
    """The config classes whose modules import here (the autoencoder module may be absent)."""
    from facelab.classifier import GRUConfig

    classes: list[type] = [GRUConfig]
    try:
        from facelab.autoencoder import AEConfig
    except ImportError:
        return classes
    return classes + [AEConfig]


def _all_fields() -> dict[str, ConfigField]:
    fields: dict[str, ConfigField] = {}
    for cls in _config_classes():
        for f in config_fields(cls):
            if f.name not in _NO_FLAG:
                fields.setdefault(f.name, f)
    return fields


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("model settings (default: the kind's preset; each applies to the kinds "
                                 "that have it)")
    for f in _all_fields().values():
        flag = "--" + f.name.replace("_", "-")
        limits = f" [{f.min:g}..{f.max:g}]" if f.min is not None and f.max is not None else ""
        text = f.help.replace("%", "%%")  # argparse %-formats help strings
        if f.type is bool:
            group.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(flag, dest=f.name, default=None, type=f.type, choices=f.choices,
                               help=f"{text}{limits}", metavar=None if f.choices else f.type.__name__.upper())


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _all_fields() if getattr(args, name, None) is not None}


def _config(kind: str, args: argparse.Namespace):
    """The kind's preset with the given flags applied; flags the kind does not have are refused."""
    from facelab.registry import config_class, config_for

    overrides = _overrides(args)
    own = {f.name for f in config_fields(config_class(kind))}
    foreign = sorted(set(overrides) - own)
    if foreign:
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise BadInputError(f"{flags} do(es) not apply to model kind {kind!r}")
    if "seed" in own and getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    if "image_size" in own and getattr(args, "size", None) and "image_size" not in overrides:
        overrides["image_size"] = args.size
    return config_for(kind, **overrides)


def _data_flags(p: argparse.ArgumentParser, train_default: int) -> None:
    p.add_argument("--data", required=True, help="data source spec (see `python -m facelab data -h`)")
    p.add_argument("--size", type=int, default=None, help="face size in pixels (default 64, or the config's image_size)")
    p.add_argument("--train-per-person", type=int, default=train_default,
                   help=f"training images per person (default {train_default}); the rest are test images")
    p.add_argument("--val-per-person", type=int, default=None,
                   help="of those, images held out for validation (model selection, thresholds); default 0 for "
                        "GRU classifiers (fixed epoch budget) and for autoencoders that keep people out of training "
                        "to calibrate their threshold (ae-metric with 10 or more people), else 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of training (default 0)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute on a GPU (memory growth is always on); no gain on a CPU")


def default_val_per_person(kind: str, config: Any, people: int) -> int:
    """Validation faces per person unless told: none where nothing needs them (as the benchmarks train), else 1.

    GRU classifiers train for a fixed epoch budget; an autoencoder that keeps calibration strangers out of training
    sets its threshold from them. Others calibrate their unknown-face threshold on validation faces."""
    from facelab.autoencoder import calibration_stranger_count

    if kind in CLASSIFIER_KINDS:
        return 0
    return 0 if calibration_stranger_count(getattr(config, "calibration_people", 0.0), people) else 1


def _load_split(args: argparse.Namespace, kind: str, config=None):
    from facelab import FACE_SIZE
    from facelab.data import load_dataset, split_dataset

    size = getattr(config, "image_size", None) or args.size or FACE_SIZE
    ds = load_dataset(args.data, image_size=size)
    val = args.val_per_person if args.val_per_person is not None else default_val_per_person(kind, config, ds.n_people)
    split = split_dataset(ds, train_per_person=args.train_per_person, val_per_person=val, seed=args.seed)
    if ds.usage is None and len(ds.images):  # split_dataset shortens what cannot be had: say so, not silently
        fewest = min(ds.counts().values())
        if args.train_per_person >= fewest:
            log.warning("--train-per-person %d: the fewest faces a person has is %d, so such people keep one face for "
                        "test and train on the rest", args.train_per_person, fewest)
        if val and val >= min(args.train_per_person, fewest - 1):
            log.warning("--val-per-person %d: each person keeps at least one face to train on, so %d faces validate "
                        "and %d train", val, len(split.val.images), len(split.train.images))
    for s in ds.skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    return ds, split, val


def _fit(model, split, verbose: bool, mixed_precision: bool = False) -> float:
    from facelab.device import configure_device

    log.info("device: %s", configure_device(mixed_precision=mixed_precision).label())
    def on_epoch(p) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in p.logs.items() if k in ("loss", "accuracy", "val_loss",
                                                                            "val_accuracy"))
        log.info("epoch %d/%d %s (%.0f s, ETA %.0f s)", p.epoch, p.epochs, shown, p.elapsed_s, p.eta_s or 0)

    start = time.perf_counter()
    model.fit(split, on_epoch=on_epoch if verbose else None)
    return time.perf_counter() - start


def _result(model, kind: str, ds, split, args, val: int, train_seconds: float, metrics: dict) -> dict:
    from facelab.device import device_info
    from facelab.registry import config_to_dict

    history = getattr(model, "history_", {}) or {}
    out = {
        "model": kind, "data": ds.source, "people": ds.n_people, "n_train": len(split.train.images),
        "n_val": len(split.val.images), "n_test": len(split.test.images), "train_per_person": args.train_per_person,
        "val_per_person": val, "seed": args.seed,
        "accuracy": metrics.get("accuracy"), "top5": metrics.get("top5"),
        "train_seconds": round(train_seconds, 2), "infer_ms_per_face": metrics.get("infer_ms_per_face"),
        "epochs_run": len(history.get("loss", [])), "best_epoch": getattr(model, "best_epoch_", None),
    }
    out.update({k: v for k, v in metrics.items() if k not in out and k != "confusion"})
    out["config"] = config_to_dict(model.config)
    out["device"] = device_info().label()
    return out


# ------------------------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=MODEL_KINDS, help="model kind")
    _data_flags(p, train_default=5)
    p.add_argument("--out", required=True, help="folder to save the model bundle in")
    p.add_argument("--replace", action="store_true", help="replace the model bundle already in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flags(p)


def _train_run(args: argparse.Namespace) -> int:
    """Train a model kind on a data source and save it as a bundle."""
    from facelab.registry import create_model
    from facelab.storage import check_bundle_target, is_bundle

    config = _config(args.kind, args)
    out = Path(args.out)
    check_bundle_target(out)  # before the training, not after it
    if is_bundle(out) and not args.replace:  # a trained model is not lost to a reused command line
        raise BadInputError(f"{out} already holds a model bundle: pass --replace to replace it, or another --out")
    ds, split, val = _load_split(args, args.kind, config)
    model = create_model(config)
    seconds = _fit(model, split, args.verbose, args.mixed_precision)
    metrics = model.evaluate(split.test) if len(split.test.images) else {}
    path = model.save(out)
    result = _result(model, args.kind, ds, split, args, val, seconds, metrics)
    result["bundle"] = str(path)
    calibration = getattr(getattr(model, "gallery_", None), "calibration", None)
    if args.json:
        if calibration is not None:
            figures = {k: v if math.isfinite(v) else None for k, v in calibration.as_dict().items()}  # strict JSON
            result["calibration"] = {**figures, "summary": calibration.describe()}
        print(json.dumps(result, indent=2))
    else:
        acc = f", test accuracy {metrics['accuracy']:.1%} on {result['n_test']} faces" if metrics else ""
        print(f"trained {args.kind} on {result['n_train']} faces of {ds.n_people} people in {seconds:.0f} s "
              f"({result['epochs_run']} epoch{'s' if result['epochs_run'] != 1 else ''}){acc}; saved to {path}")
        if calibration is not None:
            print(calibration.describe())
    return 0


# ---------------------------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"a model kind ({', '.join(MODEL_KINDS)}) to train and test, or a saved bundle "
                                 "to test on the same split")
    _data_flags(p, train_default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flags(p)


def _evaluate_run(args: argparse.Namespace) -> int:
    """Train on K images per person, test on the rest, report accuracy, top-5 and speed."""
    from facelab.registry import bundle_kind, create_model, load_model

    if args.model in MODEL_KINDS:
        kind = args.model
        config = _config(kind, args)
        ds, split, val = _load_split(args, kind, config)
        model = create_model(config)
        seconds = _fit(model, split, args.verbose, args.mixed_precision)
    else:
        path = Path(args.model)
        if not path.exists():
            raise BadInputError(f"{args.model}: neither a model kind ({', '.join(MODEL_KINDS)}) nor a saved bundle")
        kind = bundle_kind(path)
        if _overrides(args):
            raise BadInputError("model settings flags apply when training a kind, not to a saved bundle")
        model = load_model(path)
        args.size = args.size or getattr(model, "image_size_", None)
        ds, split, val = _load_split(args, kind, model.config)
        seconds = 0.0
    if not len(split.test.images):
        raise BadInputError(f"{ds.source}: no test images left with {args.train_per_person} training images per person")
    metrics = model.evaluate(split.test)
    result = _result(model, kind, ds, split, args, val, seconds, metrics)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        trained = (f"trained in {seconds:.0f} s, {result['epochs_run']} epochs" if args.model in MODEL_KINDS
                   else f"the saved bundle ({result['epochs_run']} epochs)")
        print(f"{kind} on {ds.source}: accuracy {result['accuracy']:.1%}, top-5 {result['top5']:.1%} "
              f"({result['n_test']} test faces, {result['n_train']} training faces); {trained}; "
              f"{result['infer_ms_per_face']:.2f} ms per face")
    return 0


# ---------------------------------------------------------------------------------------- identify
def _identify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a saved model bundle (folder)")
    p.add_argument("images", nargs="+", help="photos or face crops")
    p.add_argument("--threshold", type=float, default=None,
                   help="classifiers: 'unknown' below this probability; autoencoders: 'unknown' over this "
                        "distance to the nearest person (default: the model's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _identify_run(args: argparse.Namespace) -> int:
    """Name every face in photos with a saved model, "unknown" past its threshold.

    A classifier answers "unknown" below its probability threshold, a gallery beyond its distance threshold."""
    import numpy as np

    from facelab.images import read_image
    from facelab.preprocess import FaceDetector, faces_left_to_right
    from facelab.registry import load_model

    model = load_model(args.bundle)
    size = int(getattr(model, "image_size_", 0) or getattr(model.config, "image_size", 64))
    recognizer = model.recognizer(args.threshold)
    detector = FaceDetector()
    results, failed = [], 0
    for name in args.images:
        try:
            img = read_image(Path(name), name=name)
        except FaceLabError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            results.append({"image": name, "error": str(err), "faces": []})
            continue
        found = faces_left_to_right(img, detector, size)
        answers = recognizer.identify(np.stack([f.face for f in found])) if found else []
        # A gallery also gives the code distance, which its threshold is compared with.
        faces = [{"box": f.box.as_dict(), "name": a.name, "probability": round(float(a.confidence), 4),
                  **({"distance": float(f"{a.distances[0]:.4g}")} if a.distances else {}),
                  "known": bool(a.known), "top": [[n, round(float(s), 4)] for n, s in a.top]}
                 for f, a in zip(found, answers)]
        results.append({"image": name, "faces": faces})
    if args.json:
        threshold = recognizer.threshold if math.isfinite(recognizer.threshold) else None  # JSON has no Infinity
        print(json.dumps({"model": str(args.bundle), "kind": model.kind, "threshold": threshold,
                          "images": results}, indent=2))
    else:
        for r in results:
            if "error" in r:
                continue
            if not r["faces"]:
                print(f"{r['image']}: no face found")
            for i, f in enumerate(r["faces"], start=1):
                b = f["box"]
                extra = "" if f["known"] else f" (best guess {f['top'][0][0]})"
                # A gallery's threshold is a distance: its answer is given as one too (a similarity of 0.99 beside a
                # threshold of 0.004 read as a contradiction).
                score = (f"distance={f['distance']:.4g} (names up to {recognizer.threshold:.4g})" if "distance" in f
                         else f"p={f['probability']:.3f}")
                print(f"{r['image']}: face {i} at x={b['x']} y={b['y']} w={b['w']} h={b['h']}: {f['name']} "
                      f"{score}{extra}")
    return 2 if failed else 0


def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the person in front of the camera")
    p.add_argument("--out", required=True, help="data folder: the crops go to OUT/NAME/ (other people there stay)")
    p.add_argument("--camera", default="0", help="camera index (default 0) or a video file")
    p.add_argument("--n", type=int, default=10, help="face crops to collect (default 10, at least 3)")
    p.add_argument("--every", type=int, default=3, help="keep every n-th usable frame, for varied crops (default 3)")
    p.add_argument("--max-frames", type=int, default=300, help="give up after this many frames (default 300)")


def _camera_source(text: str) -> int | str:
    """`--camera`: a camera index ("0") or a video file's path (a photo is refused: OpenCV reads it as one frame)."""
    from facelab.images import IMAGE_SUFFIXES, read_image

    if text.isdigit():
        return int(text)
    if Path(text).suffix.lower() in IMAGE_SUFFIXES:
        try:
            read_image(text)
        except FaceLabError:  # not a photo either, whatever its name says: opening it as a video says so
            return text
        raise BadInputError(f"{text}: a photo, not a video; `python -m facelab identify BUNDLE {text}` names its faces")
    return text


def _capture_run(args: argparse.Namespace) -> int:
    """Collect face crops of one person from a camera or video into a data folder (one sub-folder per person)."""
    from facelab.enrol import EnrolConfig, FaceCollection, capture_from_video, check_collection_folder, check_name

    least = EnrolConfig().min_faces
    if args.n < least or args.every < 1 or args.max_frames < 1:
        raise BadInputError(f"--n must be at least {least} (the fewest crops a person is added with), --every and "
                            "--max-frames at least 1")
    config = EnrolConfig(n_faces=args.n, every=args.every)
    source = _camera_source(args.camera)
    check_collection_folder(args.out, [check_name(args.name)])  # before the person stands in front of the camera
    capture = capture_from_video(source, config, args.max_frames)
    why = capture.refused_text()
    if capture.count < config.min_faces:
        raise BadInputError(f"only {capture.count} usable face crop(s) in {capture.frames()} frames{why}")
    collection = FaceCollection()
    name = collection.add(args.name, capture.faces())
    folder = collection.save(args.out)
    print(f"Saved {capture.count} crops of {name} (from {capture.frames()} frames{why}) under {folder}")
    return 0


def _enrol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a saved autoencoder bundle (folder): its gallery changes, no retraining")
    p.add_argument("name", nargs="?", help="the person to add (a known name gets the new faces added)")
    p.add_argument("photos", nargs="*", help="photos or face crops of the person (one face each), or folders of them")
    p.add_argument("--remove", metavar="NAME", help="forget this person instead of adding one")
    p.add_argument("--list", action="store_true", help="only list the people the gallery knows")
    p.add_argument("--out", help="save the changed model here (default: over BUNDLE, atomically)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _photo_files(paths: list[str]) -> list[Path]:
    """The given files, and the image files directly inside any given folder (sorted)."""
    from facelab.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(f for f in given.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise BadInputError(f"{given}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files.extend(found)
        else:
            files.append(given)
    return files


def _enrol_run(args: argparse.Namespace) -> int:
    """Add a person to a saved autoencoder's gallery from photos, remove one, or list them (no retraining)."""
    import numpy as np

    from facelab.enrol import (
        add_person,
        already_known,
        check_name,
        crops_from_photos,
        gallery_of,
        remove_person,
        save_model,
    )
    from facelab.registry import load_model

    if sum([bool(args.list), bool(args.remove), bool(args.name)]) != 1:
        raise BadInputError("give a NAME and photos to add a person, or --remove NAME, or --list")
    if args.name and not args.photos:
        raise BadInputError(f"no photos of {args.name} given: list photo files or folders after the name")
    if args.name:
        check_name(args.name)  # before any photo is read
    model = load_model(args.bundle)
    gallery_of(model)  # a classifier has no gallery: say so before reading any photo
    refused: list[dict[str, str]] = []
    if args.remove:
        model = remove_person(model, args.remove)
        action = f"Removed {args.remove}"
    elif args.name:
        crops = crops_from_photos([(str(f), f) for f in _photo_files(args.photos)])
        refused = [{"photo": c.source, "reason": c.reason or ""} for c in crops if not c.ok]
        for r in refused:
            print(f"skipped {r['reason']}", file=sys.stderr)
        used = [c.face for c in crops if c.ok]
        known = already_known(model.recognizer(), np.stack(used), args.name) if used else {}
        if known:  # as the Live page warns: crops of someone known would be named args.name from now on
            print(f"warning: {sum(known.values())} of the {len(used)} faces look like people the gallery already "
                  "knows: " + ", ".join(f"{n} ({c})" for n, c in known.items()), file=sys.stderr)
        model = add_person(model, args.name, np.stack(used) if used else np.zeros((0, 1, 1), np.float32))
        action = f"Added {len(used)} face(s) of {' '.join(args.name.split())}"
    saved, kept = Path(args.bundle), None
    if not args.list:
        result = save_model(model, args.out or args.bundle)
        saved, kept, model = result.path, result.kept, result.model
    people = gallery_of(model).counts()
    if args.json:
        print(json.dumps({"model": str(saved), "kind": model.kind, "people": people, "refused": refused,
                          "kept_from_another_save": kept}, indent=2))
    else:
        if not args.list:
            print(f"{action}; saved to {saved}" + (f". {kept}" if kept else ""))
        print(f"The gallery knows {len(people)} people: " + ", ".join(f"{n} ({c})" for n, c in people.items()))
    return 0


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", help="folder of bundles (default: the app's model folder, "
                                             "$FACELAB_MODEL_DIR or ~/.facelab/models)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _models_run(args: argparse.Namespace) -> int:
    """List the saved model bundles in a folder with their test figures, newest first, to compare them."""
    from facelab.storage import default_model_dir, is_number, list_bundles, user_folder

    folder = user_folder(args.folder) if args.folder else default_model_dir()
    if args.folder and not folder.is_dir():
        raise BadInputError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if folder.is_dir():
        try:
            next(folder.iterdir(), None)
        except OSError as err:
            raise BadInputError(f"{folder}: the folder cannot be read ({err.strerror or err})") from None
    keys = ("accuracy", "top5", "recon_psnr", "infer_ms_per_face")
    damaged: list[tuple[str, str]] = []
    rows = [{"name": b["name"], "kind": b["kind"], "created": b["created"][:19], "people": b["people"],
             "data": b["data_source"], **{k: b["metrics"].get(k) for k in keys}}
            for b in list_bundles(folder, damaged)]
    if args.json:
        print(json.dumps({"folder": str(folder), "bundles": rows,
                          "damaged": [{"name": n, "why": why} for n, why in damaged]}, indent=2))
        return 0
    print(f"{len(rows)} bundle(s) in {folder}" + (":" if rows else ""))
    for r in rows:
        figures = [f"accuracy {r['accuracy']:.1%}" if is_number(r["accuracy"]) else "not evaluated"]
        figures += [f"PSNR {r['recon_psnr']:.1f} dB"] if is_number(r["recon_psnr"]) else []
        print(f"  {r['name']}: {r['kind']}, {r['people']} people, {', '.join(figures)}, {r['created']}, {r['data']}")
    if damaged:
        print(f"{len(damaged)} folder(s) with a meta.json that is not a readable bundle:")
        for name, why in damaged:
            print(f"  {name}: {why}")
    return 0


def _live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a saved model bundle (folder)")
    p.add_argument("--camera", default="0", help="camera index (default 0) or a video file")
    p.add_argument("--out", help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--max-frames", type=int, default=300, help="stop after this many frames (default 300; Ctrl-C "
                                                                "also stops)")
    p.add_argument("--threshold", type=float, default=None, help="as for identify (default: the model's)")
    p.add_argument("--json", action="store_true", help="print one JSON object, with the names of every frame")


def _live_run(args: argparse.Namespace) -> int:
    """Name the faces in camera or video frames, as the Live page does; optionally write the annotated video."""
    from facelab.live import identify_video
    from facelab.registry import load_model

    if args.max_frames < 1:
        raise BadInputError("--max-frames must be at least 1")
    model = load_model(args.bundle)
    source = _camera_source(args.camera)
    report = identify_video(model.recognizer(args.threshold), source, args.max_frames, args.out, Path(args.bundle).name)
    if args.json:
        print(json.dumps({"model": str(args.bundle), "kind": model.kind, **report.as_dict()}, indent=2))
        return 0
    seen = sorted(report.seen.items(), key=lambda item: -item[1])
    print(f"{report.frames} frames, {report.frames_with_faces} with a face; per frame {report.latency_ms_p50:.0f} ms "
          f"(p95 {report.latency_ms_p95:.0f} ms)")
    for name, frames in seen:
        print(f"  {name}: in {frames} frames")
    if report.saved:
        print(f"annotated video saved to {report.saved}")
    return 0


# Commands that build or load models: the CLI starts Keras quietly before them (see `start_backend_quietly`).
MODEL_COMMANDS = frozenset({"live", "enrol", "train", "evaluate", "identify"})
COMMANDS = {
    "capture": (_capture_args, _capture_run),
    "live": (_live_args, _live_run),
    "models": (_models_args, _models_run),
    "enrol": (_enrol_args, _enrol_run),
    "train": (_train_args, _train_run),
    "evaluate": (_evaluate_args, _evaluate_run),
    "identify": (_identify_args, _identify_run),
}
