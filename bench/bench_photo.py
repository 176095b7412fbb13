"""Benchmark: how often a face in a photo is named rightly, against the same face given as a 64x64 crop.

    python bench/bench_photo.py [--data olivetti:DIR] [--kinds cnn-gru ae-metric] [--seeds 0 1 2] [--sides 120 180 240]

Olivetti, 5 training / 5 test faces per person (the benchmarks' protocol; every training face trains, fixed
epochs). Each kind's preset is trained once per seed; each test face is then named (closed set: the nearest
person, no "unknown") as given, and pasted at `side` px on a 640x480 grey photo, found by the detector and
cropped as the Identify page and `python -m facelab identify` do. Reports, per kind and side, the share of
faces found and the accuracy over all test faces (a face not found counts as wrong). The gap between the two
is what the detector's framing costs: Olivetti's own crops are framed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU figures, even where a GPU is present
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from facelab.errors import FaceLabError  # noqa: E402

KINDS = ("cnn-gru", "ae-metric")
SIDES = (120, 180, 240)


def nearest_names(recognizer, faces: np.ndarray) -> np.ndarray:
    """The nearest person for each face (closed set: "unknown" is not an answer here)."""
    return np.array([a.top[0][0] if a.top else "" for a in recognizer.identify(faces)])


def photo_crops(faces: np.ndarray, side: int, detector) -> tuple[np.ndarray, np.ndarray]:
    """Each face pasted at `side` px in its own photo and cropped from it: (crops, found); a face not found
    keeps its raw crop, and `found` marks it wrong."""
    from facelab.preprocess import faces_left_to_right, place_faces

    crops, found = [], []
    for face in faces:
        detected = faces_left_to_right(place_faces([face], side=side), detector)
        found.append(bool(detected))
        crops.append(detected[0].face if detected else face)
    return np.stack(crops), np.array(found)


def run_seed(kind: str, ds, seed: int, sides: tuple[int, ...]) -> dict:
    from facelab.data import split_dataset
    from facelab.preprocess import FaceDetector
    from facelab.registry import config_for, create_model

    split = split_dataset(ds, train_per_person=5, val_per_person=0, seed=seed)
    model = create_model(config_for(kind, seed=seed))
    start = time.perf_counter()
    model.fit(split)
    recognizer = model.recognizer()
    names = np.array(split.test.face_names)
    entry = {"seed": seed, "train_seconds": round(time.perf_counter() - start, 1),
             "crop_accuracy": float(np.mean(nearest_names(recognizer, split.test.images) == names))}
    detector = FaceDetector()
    for side in sides:
        crops, found = photo_crops(split.test.images, side, detector)
        right = (nearest_names(recognizer, crops) == names) & found
        entry[f"photo_{side}px"] = {"found": float(found.mean()), "accuracy": float(right.mean())}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default="olivetti:" + os.environ.get("FACELAB_OLIVETTI_DIR",
                                             str(Path(__file__).resolve().parents[2] / "shared/data/olivetti")),
        help="data spec (default: $FACELAB_OLIVETTI_DIR, else ../shared/data/olivetti)",
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), help="model kinds")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sides", nargs="+", type=int, default=list(SIDES), help="face sizes in the photo, px")
    args = parser.parse_args(argv)

    from facelab.data import load_dataset
    from facelab.device import device_info

    try:
        ds = load_dataset(args.data)
    except FaceLabError as err:
        raise SystemExit(f"bench_photo: {err}") from None
    report: dict = {"benchmark": "faces in photos vs crops", "data": args.data.split(":")[0],
                    "device": device_info().label(), "photo": "640x480, grey background", "results": {}}
    for kind in args.kinds:
        runs = [run_seed(kind, ds, seed, tuple(args.sides)) for seed in args.seeds]
        mean = {"crop_accuracy": float(np.mean([r["crop_accuracy"] for r in runs]))}
        for side in args.sides:
            key = f"photo_{side}px"
            mean[key] = {m: float(np.mean([r[key][m] for r in runs])) for m in ("found", "accuracy")}
        report["results"][kind] = {"mean": mean, "runs": runs}
        print(f"{kind}: crops {mean['crop_accuracy']:.3f}, "
              + ", ".join(f"{s} px {mean[f'photo_{s}px']['accuracy']:.3f}" for s in args.sides), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
