"""Benchmark: GRU classifiers against classical baselines on Olivetti, 5 training / 5 test faces per person.

    python bench/bench_gru.py [--seeds 0 1 2] [--models raw-1nn eigenfaces gru cnn-gru] [--epochs N]

Every model sees the same three seeded splits (5 training images per person, the other 5 for test).
GRU models train with their recommended preset (`GRUConfig.preset(kind)`) and no validation images:
the fixed epoch budget of each preset was chosen beforehand on validation runs (4 training + 1
validation image per person, all from the training side of these same splits), never on test images.
Prints one JSON object: accuracy per seed and mean, training seconds, training throughput, and
inference time per face through the compiled path.
Wall-clock timings depend on what else runs on the machine (the load average is recorded with them);
`train_cpu_seconds` (CPU time of all threads) bounds the training time on idle cores from above.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from facelab.data import load_dataset, split_dataset  # noqa: E402
from facelab.errors import FaceLabError  # noqa: E402
from facelab.evaluation import score_metrics, time_per_face  # noqa: E402

CLASSICAL = ("raw-1nn", "eigenfaces")
GRU_KINDS = ("gru", "cnn-gru")


def classical(name: str, split) -> dict:
    """Raw-pixel 1-NN or eigenfaces (PCA, 50 components) + 1-NN, with scikit-learn."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    train, test = split.train, split.test
    x_train, x_test = train.images.reshape(len(train.images), -1), test.images.reshape(len(test.images), -1)
    steps = [PCA(n_components=50, random_state=0)] if name == "eigenfaces" else []
    model = make_pipeline(*steps, KNeighborsClassifier(n_neighbors=1))
    start = time.perf_counter()
    model.fit(x_train, train.labels)
    seconds = time.perf_counter() - start
    # Scores for top-5: minus the distance to each person's nearest training face (1-NN's own ranking).
    feats_train, feats_test = (model[:-1].transform(x_train), model[:-1].transform(x_test)) if steps else (x_train, x_test)
    dist = pairwise_distances(feats_test, feats_train)
    scores = np.stack([-dist[:, train.labels == p].min(axis=1) for p in range(train.n_people)], axis=1)
    metrics = score_metrics(test.labels, scores, train.names)
    metrics.update(time_per_face(lambda f: model.predict(f.reshape(len(f), -1)), test.images))
    return {"accuracy": metrics["accuracy"], "top5": metrics["top5"], "train_seconds": seconds,
            "infer_ms_per_face": metrics["infer_ms_per_face"], "latency_ms_one_face": metrics["latency_ms_one_face"]}


def gru(kind: str, split, seed: int, epochs: int | None) -> dict:
    from facelab.classifier import FaceClassifier, GRUConfig
    from facelab.registry import replace_config

    overrides = {"seed": seed, **({"epochs": epochs} if epochs else {})}
    config = replace_config(GRUConfig.preset(kind), **overrides)
    start, cpu = time.perf_counter(), time.process_time()
    clf = FaceClassifier(config).fit(split)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    metrics = clf.evaluate(split.test)
    return {"accuracy": metrics["accuracy"], "top5": metrics["top5"], "train_seconds": seconds,
            "train_cpu_seconds": cpu, "epochs_run": clf.epochs_run_,
            "train_faces_per_s": clf.epochs_run_ * len(split.train.images) / seconds,
            "infer_ms_per_face": metrics["infer_ms_per_face"], "latency_ms_one_face": metrics["latency_ms_one_face"],
            "config": {"units": config.units, "layers": config.layers, "cell": config.cell,
                       "bidirectional": config.bidirectional, "dropout": config.dropout, "flip_test": config.flip_test,
                       "zoom_test": config.zoom_test,
                       "train": vars(config.train)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="olivetti:" + str(Path(__file__).resolve().parents[2] / "shared/data/olivetti"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(CLASSICAL + GRU_KINDS), choices=CLASSICAL + GRU_KINDS)
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (quick runs)")
    args = parser.parse_args()

    from facelab.device import device_info

    try:
        ds = load_dataset(args.data)
    except FaceLabError as err:
        raise SystemExit(f"bench_gru: {err}") from None
    load_before = os.getloadavg()
    results: dict[str, dict] = {m: {"runs": []} for m in args.models}
    for seed in args.seeds:
        split = split_dataset(ds, train_per_person=5, val_per_person=0, seed=seed)
        for name in args.models:
            run = classical(name, split) if name in CLASSICAL else gru(name, split, seed, args.epochs)
            run["seed"] = seed
            results[name]["runs"].append(run)
            print(f"{name} seed {seed}: accuracy {run['accuracy']:.4f}, trained in {run['train_seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    for r in results.values():
        runs = r["runs"]
        acc = [x["accuracy"] for x in runs]
        r.update(accuracy_per_seed=acc, mean_accuracy=float(np.mean(acc)), std_accuracy=float(np.std(acc)),
                 mean_top5=float(np.mean([x["top5"] for x in runs])),
                 train_seconds_per_seed=[round(x["train_seconds"], 2) for x in runs],
                 max_train_seconds=max(x["train_seconds"] for x in runs),
                 infer_ms_per_face=float(np.median([x["infer_ms_per_face"] for x in runs])),
                 latency_ms_one_face=float(np.median([x["latency_ms_one_face"] for x in runs])))
        if "config" in runs[0]:
            r["config"] = runs[0]["config"]
            r["train_faces_per_s"] = float(np.mean([x["train_faces_per_s"] for x in runs]))
            # CPU seconds of all threads: an upper bound on the wall time on 2 idle cores, whatever else runs.
            r["max_train_cpu_seconds"] = max(x["train_cpu_seconds"] for x in runs)
        for x in runs:
            x.pop("config", None)
    print(json.dumps({
        "protocol": "olivetti, 5 train / 5 test images per person, no validation images, seeds "
                    + ",".join(map(str, args.seeds)),
        "data": ds.source, "device": device_info().label(), "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
