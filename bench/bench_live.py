"""Benchmark: per-frame latency of the live pipeline at 640x480, on the CPU, for each model kind.

    python bench/bench_live.py [--data olivetti:DIR] [--frames 150] [--kinds gru cnn-gru ae-dense ae-conv ae-metric]

Each kind's recommended architecture is built and trained for one epoch on Olivetti (the weights do
not change the cost of a frame). Frames are Olivetti faces placed on a 640x480 background, one face
(160 px) or three (120 px), turned into WebRTC-style yuv420p `av.VideoFrame`s, and passed through
`LiveRecognizer.recv` exactly as the webcam page does. Reports p50/p95 in ms of each stage (decode,
detect, align, identify, draw) and of the whole frame; target: p95 under 33 ms for one face, so the
camera (30 frames/s), not FaceLab, sets the frame rate. The load average is recorded with the figures.
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
from facelab.live import STAGES, LiveRecognizer  # noqa: E402
from facelab.preprocess import place_faces  # noqa: E402

KINDS = ("gru", "cnn-gru", "ae-dense", "ae-conv", "ae-metric")
TARGET_P95_MS = 33.0


def make_recognizer(kind: str, split):
    """A model of `kind` (preset architecture, one epoch of training) as a Recognizer."""
    from facelab.registry import config_for, create_model

    if kind == "none":
        return None
    model = create_model(config_for(kind, epochs=1))
    model.fit(split)
    return model.recognizer()


def frames_for(faces: np.ndarray, n_faces: int) -> list[np.ndarray]:
    """Eight different 640x480 BGR frames with `n_faces` Olivetti faces each."""
    side = 160 if n_faces == 1 else 120
    picks = [[(7 + 10 * (3 * i + j) + 13 * i) % 400 for j in range(n_faces)] for i in range(8)]
    return [place_faces([faces[p] for p in pick], side=side) for pick in picks]


def run(live: LiveRecognizer, frames: list[np.ndarray], n: int, warmup: int = 10) -> dict:
    import av

    video = [av.VideoFrame.from_ndarray(f, format="bgr24").reformat(format="yuv420p") for f in frames]
    timings: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    found = []
    for i in range(warmup + n):
        start = time.perf_counter()
        live.recv(video[i % len(video)])
        total = (time.perf_counter() - start) * 1e3
        if i < warmup:
            continue
        result = live.last_result()
        for stage in STAGES:
            timings[stage].append(result.timings_ms[stage])
        timings["total"].append(total)
        found.append(len(result.faces))

    def pct(values: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}

    return {
        "frames": n,
        "faces_found_mean": round(float(np.mean(found)), 2),
        **{stage: pct(values) for stage, values in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="timed frames per model and face count")
    parser.add_argument(
        "--data",
        default="olivetti:" + os.environ.get("FACELAB_OLIVETTI_DIR",
                                             str(Path(__file__).resolve().parents[2] / "shared/data/olivetti")),
        help="data spec for the one-epoch training and the frames (default: $FACELAB_OLIVETTI_DIR, else "
             "../shared/data/olivetti)",
    )
    parser.add_argument("--kinds", nargs="+", default=["none", *KINDS], help="model kinds ('none': no model)")
    args = parser.parse_args(argv)

    from facelab.data import load_dataset, split_dataset
    from facelab.device import device_info

    try:
        ds = load_dataset(args.data)
    except FaceLabError as err:
        raise SystemExit(f"bench_live: {err}") from None
    split = split_dataset(ds, train_per_person=5, val_per_person=1, seed=0)
    faces = (ds.images * 255).astype(np.uint8)
    report: dict = {
        "benchmark": "live frame latency",
        "frame": "640x480",
        "device": device_info().label(),
        "cpu_count": os.cpu_count(),
        "target_p95_ms_one_face": TARGET_P95_MS,
        "results": {},
    }
    for kind in args.kinds:
        recognizer = make_recognizer(kind, split)
        entry = {}
        for n_faces in (1, 3):
            live = LiveRecognizer(recognizer, model_name=kind)
            entry[f"{n_faces}_face{'s' if n_faces > 1 else ''}"] = run(live, frames_for(faces, n_faces), args.frames)
        entry["meets_target"] = entry["1_face"]["total"]["p95"] < TARGET_P95_MS
        report["results"][kind] = entry
        print(f"{kind}: one face p95 {entry['1_face']['total']['p95']} ms", file=sys.stderr)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
