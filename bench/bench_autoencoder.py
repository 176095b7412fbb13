"""Benchmark: autoencoder codes as face embeddings on Olivetti; prints one JSON object.

Protocol (issue 4): per seed, 5 training and 5 test images per person. Models train on all 5 training
images with their preset's fixed epoch budget and no validation images, as in `bench_gru.py` (the
budgets and recipes were chosen beforehand on validation runs that held training-side faces out); test
images steer nothing. Closed set: 1-nearest-neighbour on codes (cosine; euclidean too), the gallery holding
all 5 training images per person, for the seed dense autoencoder (exactly the seed, and the same
network trained by `DENSE_RECIPE`), the conv autoencoder, the metric-learning one, raw pixels and
PCA with the same code size; test reconstruction PSNR of each. The ae-metric preset keeps 20% of the
people out of training as calibration strangers (`AEConfig.calibration_people`; not the seed).
Open set: 10 of the 40 people (drawn per seed) are left out of training and of the gallery; the
`ae-metric` model trained on the other 30 calibrates its threshold for a 1% false-accept rate as
`fit` does by default: 6 of the 30 are kept out of training, their faces are the impostors, and
they are enrolled afterwards (PCA, for reference, enrols 4 training faces per person and calibrates on
the 5th); reported on test
faces: the true-accept rate (right name, accepted), the share of the left-out people's faces
answered "unknown", and, for reference only, the true-accept rate at the strictest threshold that
keeps test false accepts at or under 1%. Also, as the app's "remove a person" does: the closed-set `ae-metric`
model with the same 10 people removed from its gallery (their training faces were seen in training, so
this is easier than strangers) on all test faces (`closed_set.removed_from_gallery`).

    python bench/bench_autoencoder.py [--seeds 0 1 2] [--olivetti DIR] [--epochs-scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from facelab.autoencoder import DENSE_RECIPE, FaceAutoencoder  # noqa: E402
from facelab.data import DataSplit, FaceDataset, load_olivetti, split_dataset  # noqa: E402
from facelab.errors import FaceLabError  # noqa: E402
from facelab.gallery import Gallery  # noqa: E402
from facelab.reconstruction import mean_face_baseline, psnr_per_image  # noqa: E402
from facelab.registry import AUTOENCODER_KINDS, config_for, replace_config  # noqa: E402

log = logging.getLogger("bench")
HELD_OUT = 10
# The three presets, plus the seed's dense network (same layers) trained by the recommended recipe:
# the seed's relu code and 50 full-batch steps leave most code units dead on 160 faces.
VARIANTS = [(kind, {}) for kind in AUTOENCODER_KINDS] + [("ae-dense-recipe", DENSE_RECIPE)]
AE_ALIASES = {"ae-dense-recipe": "ae-dense"}
FAR = 0.01


def one_nn(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray, test_labels: np.ndarray,
           metric: str) -> float:
    """1-NN accuracy with every training code in the gallery."""
    gallery = Gallery(metric=metric, mode="all", k=1)
    for label in np.unique(train_labels):
        gallery.enrol_codes(str(label), train_codes[train_labels == label])
    answers = gallery.identify_codes(test_codes)
    return float(np.mean([a.top[0][0] == str(t) for a, t in zip(answers, test_labels)]))


def oracle_tar(gallery: Gallery, codes: np.ndarray, names: list[str], far: float = FAR) -> float:
    """Reference only: TAR at the strictest test threshold with at most `far` of left-out faces accepted."""
    people, dist = gallery.distances(codes)
    enrolled = np.array([n in people for n in names])
    best = dist.min(axis=1)
    imp = np.sort(best[~enrolled])
    allowed = int(np.floor(far * len(imp)))
    threshold = np.nextafter(imp[allowed], -np.inf)  # accepts exactly `allowed` impostors
    right = np.array([people[int(np.argmin(row))] == n for row, n in zip(dist, names)])
    return float(np.mean((right & (best <= threshold))[enrolled]))


def people_subset(ds: FaceDataset, labels: np.ndarray) -> FaceDataset:
    return ds.subset(np.flatnonzero(np.isin(ds.labels, labels)))


def held_out_people(n_people: int, seed: int) -> np.ndarray:
    """The people the open-set runs keep out of the gallery (drawn per seed)."""
    return np.sort(np.random.default_rng(1000 + seed).choice(n_people, HELD_OUT, replace=False))


def removed_from_gallery(model: FaceAutoencoder, split: DataSplit, held: np.ndarray) -> dict:
    """The app's "remove a person": the closed-set model (trained on everyone's training faces, threshold as
    calibrated by `fit`) with the held-out people removed from its gallery; probes are all test faces. The
    removed people's test faces were never seen, but their training faces were: an easier case than strangers."""
    gallery = model.gallery_.copy()
    for label in held:
        gallery.remove(split.test.names[label])
    names = [split.test.names[i] for i in split.test.labels]
    codes = model.embed(split.test.images)
    return {**gallery.open_set_rates(codes, names), "threshold": gallery.threshold,
            "oracle_tar_at_far": oracle_tar(gallery, codes, names)}


def closed_set(split: DataSplit, seed: int, epochs_scale: float, held: np.ndarray) -> dict:
    train5 = np.concatenate([split.train.images, split.val.images])
    labels5 = np.concatenate([split.train.labels, split.val.labels])
    test, test_labels = split.test.images, split.test.labels
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    out: dict = {}
    out["raw_pixels"] = {"acc_euclidean": one_nn(flat(train5), labels5, flat(test), test_labels, "euclidean"),
                         "acc_cosine": one_nn(flat(train5), labels5, flat(test), test_labels, "cosine")}
    out["mean_face"] = {"psnr": mean_face_baseline(train5, test)["psnr"]}
    dims = {}
    for kind, overrides in VARIANTS:
        config = config_for(AE_ALIASES.get(kind, kind), seed=seed, **overrides)
        if epochs_scale != 1.0:
            config = replace_config(config, epochs=max(1, round(config.train.epochs * epochs_scale)))
        start = time.perf_counter()
        model = FaceAutoencoder(config).fit(split)
        seconds = time.perf_counter() - start
        codes5, codes_test = model.encode(train5), model.encode(test)
        evaluation = model.evaluate(split.test)
        live = np.ptp(codes5, axis=0) > 1e-6  # a relu unit that is 0 on every training face is dead
        mu, sd = codes5[:, live].mean(0), codes5[:, live].std(0)
        out[kind] = {
            "acc_cosine": one_nn(codes5, labels5, codes_test, test_labels, "cosine"),
            "acc_euclidean": one_nn(codes5, labels5, codes_test, test_labels, "euclidean"),
            # The model's own embedding (cosine; flip-averaged where the config says so).
            "acc_embedding": one_nn(model.embed(train5), labels5, model.embed(test), test_labels, "cosine"),
            # Codes standardised with the training codes' mean and spread (no test statistics).
            "acc_standardised_cosine": one_nn((codes5[:, live] - mu) / sd, labels5, (codes_test[:, live] - mu) / sd,
                                              test_labels, "cosine"),
            "dead_code_units": float(1 - live.mean()),
            "acc_gallery": evaluation["accuracy"],  # the model's own gallery (enrolled by `fit`)
            "psnr": evaluation["recon_psnr"], "ssim": evaluation["recon_ssim"], "mse": evaluation["recon_mse"],
            "fit_s": seconds, "epochs_run": len(model.history_.get("loss", [])), "best_epoch": model.best_epoch_,
            "calibration_people": len(model.calibration_people_),
        }
        dims[config.encoding_dim] = True
        if kind == "ae-metric":
            out["removed_from_gallery"] = removed_from_gallery(model, split, held)
        log.info("seed %d %s: %s", seed, kind, out[kind])
    for dim in dims:
        pca = PCA(dim, random_state=seed).fit(flat(train5))
        ztrain, ztest = pca.transform(flat(train5)), pca.transform(flat(test))
        recon = np.clip(pca.inverse_transform(ztest), 0, 1).reshape(test.shape)
        out[f"pca_{dim}"] = {"acc_euclidean": one_nn(ztrain, labels5, ztest, test_labels, "euclidean"),
                             "acc_cosine": one_nn(ztrain, labels5, ztest, test_labels, "cosine"),
                             "acc_whitened_cosine": one_nn(ztrain / np.sqrt(pca.explained_variance_), labels5,
                                                           ztest / np.sqrt(pca.explained_variance_), test_labels,
                                                           "cosine"),
                             "psnr": float(psnr_per_image(test, recon).mean())}
    return out


def open_set(ds: FaceDataset, split: DataSplit, seed: int, epochs_scale: float, held: np.ndarray,
             split_with_val: DataSplit) -> dict:
    known = np.setdiff1d(np.arange(ds.n_people), held)
    part = DataSplit(*(people_subset(p, known) for p in (split.train, split.val, split.test)))
    # Probes: the known people's test faces and every face of the people left out.
    probes = FaceDataset(np.concatenate([part.test.images, people_subset(ds, held).images]),
                         np.concatenate([part.test.labels, people_subset(ds, held).labels]), ds.names, ds.source)
    names = [ds.names[i] for i in probes.labels]
    out: dict = {"held_out_people": [ds.names[i] for i in held], "known_probe_faces": len(part.test.images),
                 "unknown_probe_faces": int(len(probes.images) - len(part.test.images))}

    config = config_for("ae-metric", seed=seed, far=FAR)
    if epochs_scale != 1.0:
        config = config_for("ae-metric", seed=seed, far=FAR, epochs=max(1, round(config.train.epochs * epochs_scale)))
    model = FaceAutoencoder(config).fit(part)
    codes = model.embed(probes.images)
    rates = model.gallery_.open_set_rates(codes, names)
    out["ae-metric"] = {**rates, "threshold": model.gallery_.threshold,
                        "calibration_people": model.calibration_people_,
                        "calibration": model.gallery_.calibration.as_dict(),
                        "oracle_tar_at_far": oracle_tar(model.gallery_, codes, names)}
    # PCA of the same size on the same 30 people, same gallery rule and calibration, for reference.
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    part = DataSplit(*(people_subset(p, known) for p in (split_with_val.train, split_with_val.val, split.test)))
    pca = PCA(config.encoding_dim, random_state=seed).fit(flat(part.train.images))
    gallery = Gallery(lambda f: pca.transform(flat(f)).astype(np.float32), mode=config.gallery_mode)
    for label in known:
        gallery.enrol_codes(ds.names[label], gallery.embed(part.train.images[part.train.labels == label]))
    cal = gallery.calibrate(part.val.images, [ds.names[i] for i in part.val.labels], far=FAR)
    pcodes = gallery.embed(probes.images)
    out[f"pca_{config.encoding_dim}"] = {**gallery.open_set_rates(pcodes, names), "threshold": cal.threshold,
                                         "oracle_tar_at_far": oracle_tar(gallery, pcodes, names)}
    log.info("seed %d open set: %s", seed, {k: out[k] for k in ("ae-metric",)})
    return out


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every number in the per-seed results."""
    def walk(items: list, prefix: str, acc: dict) -> None:
        first = items[0]
        for key, value in first.items():
            if isinstance(value, dict):
                walk([it[key] for it in items], f"{prefix}{key}.", acc)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                vals = np.array([it[key] for it in items], float)
                acc[f"{prefix}{key}"] = {"mean": float(vals.mean()), "std": float(vals.std())}
    acc: dict = {}
    walk(runs, "", acc)
    return acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--olivetti", default=os.environ.get("FACELAB_OLIVETTI_DIR",
                                                             str(Path(__file__).resolve().parents[2] / "shared" /
                                                                 "data" / "olivetti")))
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="scale every preset's epochs (quick runs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    import keras

    try:
        ds = load_olivetti(args.olivetti)
    except FaceLabError as err:
        raise SystemExit(f"bench_autoencoder: {err}") from None
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        # The same test faces either way: the split draws one order of each person's faces per seed.
        split = split_dataset(ds, train_per_person=5, val_per_person=0, seed=seed)
        split_with_val = split_dataset(ds, train_per_person=5, val_per_person=1, seed=seed)
        held = held_out_people(ds.n_people, seed)
        runs.append({"seed": seed, "closed_set": closed_set(split, seed, args.epochs_scale, held),
                     "open_set": open_set(ds, split, seed, args.epochs_scale, held, split_with_val)})
    summary = summarise([{k: v for k, v in r.items() if k != "seed"} for r in runs])
    result = {
        "benchmark": "autoencoder embeddings, Olivetti 5 train / 5 test per person",
        "seeds": args.seeds, "far_target": FAR, "held_out_people": HELD_OUT,
        "summary": summary, "runs": runs,
        "seconds": time.perf_counter() - start,
        "machine": {"python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend(), "cpus": os.cpu_count()},
    }
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
