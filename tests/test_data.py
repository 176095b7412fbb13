"""Data sources and splits on real data: Olivetti, folders and zips of crops and photos, FER2013, LFW."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from facelab.data import (
    load_dataset,
    load_fer2013,
    load_lfw,
    load_olivetti,
    load_synthetic,
    load_upload,
    parse_spec,
    split_dataset,
)
from facelab.errors import BadInputError, FaceLabError
from tests.helpers import patch_zip_headers, photo_with_faces


def test_olivetti_from_shared_folder(olivetti_dir):
    ds = load_dataset(f"olivetti:{olivetti_dir}")
    assert ds.images.shape == (400, 64, 64) and ds.images.dtype == np.float32
    assert ds.n_people == 40 and set(ds.counts().values()) == {10}
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0


def test_olivetti_from_mat_equals_npy(olivetti_dir, tmp_path):
    (tmp_path / "olivettifaces.mat").symlink_to(olivetti_dir / "olivettifaces.mat")
    from_mat = load_olivetti(tmp_path)
    np.testing.assert_allclose(from_mat.images, load_olivetti(olivetti_dir).images)


def test_olivetti_folder_reads_its_labels_and_any_pixel_type(olivetti_uint8, tmp_path):
    faces, labels = olivetti_uint8
    order = np.random.default_rng(0).permutation(len(faces))  # not 10 faces per person in a row any more
    np.save(tmp_path / "faces.npy", faces[order].astype(np.float64))  # 0..255 as floats
    np.save(tmp_path / "labels.npy", labels[order])
    ds = load_olivetti(tmp_path)
    assert ds.images.max() <= 1.0 and ds.n_people == 40
    np.testing.assert_array_equal(ds.labels, labels[order])
    np.testing.assert_allclose(ds.images, faces[order] / 255.0, atol=1e-6)


@pytest.mark.parametrize("content, message", [
    (lambda d: np.save(d / "faces.npy", np.zeros(5)), "expected N square grey faces"),
    (lambda d: np.save(d / "faces.npy", np.array([{"a": 1}], dtype=object)), "not a readable array file"),
    (lambda d: (np.save(d / "faces.npy", np.zeros((4, 8, 8))), np.save(d / "labels.npy", np.arange(3))),
     "expected 4 person numbers"),
    (lambda d: __import__("scipy.io").io.savemat(d / "olivettifaces.mat", {"other": np.zeros(3)}),
     "not the Olivetti .mat file"),
])
def test_a_broken_olivetti_folder_is_one_clear_message(tmp_path, content, message):
    content(tmp_path)
    with pytest.raises(BadInputError, match=message):
        load_dataset(f"olivetti:{tmp_path}")


def test_olivetti_env_var(olivetti_dir, monkeypatch):
    monkeypatch.setenv("FACELAB_OLIVETTI_DIR", str(olivetti_dir))
    assert len(load_dataset("olivetti").images) == 400


def test_synthetic_is_deterministic_and_distinguishable():
    a, b, c = load_synthetic(seed=3), load_synthetic(seed=3), load_synthetic(seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)
    assert a.n_people >= 10 and "synthetic" in a.source
    split = split_dataset(a, train_per_person=10, val_per_person=0, seed=0)
    knn = KNeighborsClassifier(1).fit(split.train.images.reshape(len(split.train.images), -1), split.train.labels)
    accuracy = knn.score(split.test.images.reshape(len(split.test.images), -1), split.test.labels)
    assert accuracy > 4 / a.n_people  # chance is 1/12; measured 0.6
    with pytest.raises(BadInputError, match="at most 20000 faces"):  # refused at once, not after filling the memory
        load_dataset("synthetic:people=100000,per_person=100000")


def test_split_is_per_person_seeded_and_disjoint(olivetti):
    split = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=7)
    assert len(split.train.images) == 160 and len(split.val.images) == 40 and len(split.test.images) == 200
    assert set(np.bincount(split.train.labels)) == {4} and set(np.bincount(split.test.labels)) == {5}
    again = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=7)
    np.testing.assert_array_equal(split.test.images, again.test.images)
    other = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=8)
    assert not np.array_equal(split.test.images, other.test.images)
    rows = lambda d: {r.tobytes() for r in d.images}  # noqa: E731
    assert not rows(split.train) & rows(split.test) and not rows(split.val) & rows(split.test)


def _write_people(root: Path, faces: np.ndarray, people: dict[str, list[int]], ext: str = ".png") -> None:
    for name, indices in people.items():
        (root / name).mkdir(parents=True)
        for j, i in enumerate(indices):
            cv2.imwrite(str(root / name / f"{j + 1}{ext}"), faces[i])


def test_folder_of_crops_att_layout(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    # AT&T layout: s1/1.pgm ... at 92x112, which is a crop (no detection)
    for s, person in enumerate([0, 1, 2]):
        (tmp_path / f"s{s + 1}").mkdir()
        for j in range(4):
            cv2.imwrite(str(tmp_path / f"s{s + 1}" / f"{j + 1}.pgm"), cv2.resize(faces[person * 10 + j], (92, 112)))
    ds = load_dataset(str(tmp_path))
    assert ds.names == ["s1", "s2", "s3"] and len(ds.images) == 12 and not ds.skipped


def test_folder_of_photos_detects_and_reports(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    for name, person in (("alice", 0), ("bob", 2)):
        (tmp_path / name).mkdir()
        for j in range(3):
            cv2.imwrite(str(tmp_path / name / f"p{j}.jpg"), photo_with_faces([faces[person * 10 + j]]))
    cv2.imwrite(str(tmp_path / "alice" / "empty.jpg"), np.full((240, 320, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "bob" / "group.jpg"), photo_with_faces([faces[0], faces[20]], width=480))
    (tmp_path / "bob" / "notes.txt").write_text("hello")
    (tmp_path / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "bob" / "zero.png").write_bytes(b"")
    ds = load_dataset(str(tmp_path))
    assert ds.names == ["alice", "bob"] and ds.counts() == {"alice": 3, "bob": 3}
    reasons = {s.path: s.reason for s in ds.skipped}
    assert reasons["alice/empty.jpg"] == "no face found"
    assert reasons["bob/group.jpg"].startswith("2 faces found")
    assert "not an image file type" in reasons["bob/notes.txt"]
    assert "corrupt" in reasons["bob/broken.jpg"] or "not an image" in reasons["bob/broken.jpg"]
    assert "empty file" in reasons["bob/zero.png"]
    # the crops are the right faces: each is closest to its own person's original
    originals = faces[[0, 1, 2, 20, 21, 22]].astype(np.float32) / 255
    for k, face in enumerate(ds.images):
        corr = [np.corrcoef(face.ravel(), o.ravel())[0, 1] for o in originals]
        assert int(np.argmax(corr)) // 3 == k // 3


def test_folder_needs_two_people_with_two_images(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    _write_people(tmp_path, faces, {"only": [0, 1, 2]})
    with pytest.raises(BadInputError, match="at least 2 people"):
        load_dataset(str(tmp_path))
    _write_people(tmp_path, faces, {"single": [10], "third": [20, 21]})
    ds = load_dataset(str(tmp_path))
    assert ds.names == ["only", "third"]
    assert any("'single' has 1 usable image" in s.reason for s in ds.skipped)
    # "unknown" is every recogniser's answer for strangers: a folder of that name is no person (a gallery refused
    # it only after a whole training).
    _write_people(tmp_path, faces, {"Unknown": [30, 31, 32]})
    ds = load_dataset(str(tmp_path))
    assert ds.names == ["only", "third"]
    assert any(s.path == "Unknown/" and "rename the folder" in s.reason for s in ds.skipped)


def _zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png(face: np.ndarray) -> bytes:
    return cv2.imencode(".png", face)[1].tobytes()


def test_zip_with_wrapping_folder(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    entries = {f"faces/{name}/{j}.png": _png(faces[p * 10 + j]) for name, p in (("ann", 5), ("ben", 6), ("cy", 7))
               for j in range(5)}
    entries["__MACOSX/._junk"] = b"junk"
    path = tmp_path / "people.zip"
    path.write_bytes(_zip_of(entries))
    ds = load_dataset(str(path))
    assert ds.names == ["ann", "ben", "cy"] and len(ds.images) == 15 and ds.source == "zip people.zip"
    np.testing.assert_allclose(ds.images[0], faces[50] / 255, atol=1e-6)


def test_zip_path_traversal_is_refused(olivetti_uint8, tmp_path, monkeypatch):
    faces, _ = olivetti_uint8
    unpack = tmp_path / "a" / "b"  # the zip is unpacked in a folder made here, so "../../" would reach tmp_path
    unpack.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(unpack))
    path = tmp_path / "evil.zip"
    path.write_bytes(_zip_of({"a/1.png": _png(faces[0]), "../../escape.png": _png(faces[1])}))
    with pytest.raises(BadInputError, match="outside the archive"):
        load_dataset(str(path))
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "a" / "escape.png").exists()
    assert list(unpack.iterdir()) == []  # the unpacking folder is removed too


def test_zip_links_and_too_many_files_are_refused(olivetti_uint8, tmp_path, monkeypatch):
    faces, _ = olivetti_uint8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", _png(faces[0]))
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd, as `zip --symlinks` stores it
        zf.writestr(link, "/etc/passwd")
    path = tmp_path / "link.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(BadInputError, match="'a/link.png' is a symbolic link"):
        load_dataset(str(path))
    monkeypatch.setattr("facelab.data.ZIP_MAX_FILES", 5)
    path.write_bytes(_zip_of({f"p{k}/{j}.png": _png(faces[k * 10 + j]) for k in range(2) for j in range(3)}))
    with pytest.raises(BadInputError, match="zip holds 6 files; the limit is 5"):
        load_dataset(str(path))


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    path.write_bytes(_zip_of({"a/big.png": b"\0" * (64 * 2**20)}))  # 64 MiB of zeros packs to ~64 KiB
    with pytest.raises(BadInputError, match="zip bomb"):
        load_dataset(str(path))


def test_zip_over_the_unpacked_limit_is_refused(olivetti_uint8, tmp_path, monkeypatch):
    faces, _ = olivetti_uint8
    monkeypatch.setattr("facelab.data.ZIP_MAX_BYTES", 20_000)  # the real limit is 1 GiB; same mechanism
    path = tmp_path / "big.zip"
    path.write_bytes(_zip_of({f"p{k}/{j}.png": _png(faces[k * 10 + j]) for k in range(2) for j in range(5)}))
    with pytest.raises(BadInputError, match="unpacks to .* the limit is"):
        load_dataset(str(path))


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_text("not a zip")
    with pytest.raises(BadInputError, match="not a readable zip"):
        load_dataset(str(path))
    # A zip whose directory reads fine but one of whose files is damaged (a flipped byte: bad CRC).
    data = bytearray(_zip_of({"a/1.png": b"A" * 4000, "b/1.png": b"B" * 4000}))
    data[40] ^= 0xFF  # inside a/1.png's compressed bytes
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="corrupt zip entry 'a/1.png'"):
        load_dataset(str(path))


def _fer_csv(faces: np.ndarray) -> str:
    lines = ["emotion,pixels,Usage"]
    usages = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    for i in range(20):
        pixels = " ".join(map(str, cv2.resize(faces[i], (48, 48)).ravel()))
        lines.append(f"{i % 3},{pixels},{usages[i % 10]}")
    return "\n".join(lines) + "\n"


def test_fer2013_csv_keeps_usage_split(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    text = _fer_csv(faces)
    bad_rows = ("4,1 2 3,Training\n9," + " ".join(["0"] * 2304) + ",Training\nx,y,Training\n"
                "1," + " ".join(["nan"] * 2304) + ",Training\n2," + " ".join(["300"] * 2304) + ",Training\n")
    path = tmp_path / "fer.csv"
    path.write_text(text + bad_rows)
    ds = load_fer2013(path)
    assert ds.names == ["angry", "disgust", "fear"]  # only the expressions it has (7 made the smallest one empty)
    np.testing.assert_array_equal(ds.labels, np.arange(20) % 3)
    assert ds.label_plural == "expressions" and ds.subset(np.arange(3)).label_kind == "expression"  # not "people"
    assert len(ds.images) == 20 and ds.images.shape[1:] == (64, 64)
    reasons = [s.reason for s in ds.skipped]
    assert any("3 pixel values; expected 2304" in r for r in reasons)
    assert any("emotion 9 is not 0-6" in r for r in reasons)
    assert any("not numbers" in r for r in reasons)
    assert sum("pixel values outside 0-255" in r for r in reasons) == 2  # NaN and 300 are not clipped into faces
    split = split_dataset(ds)
    assert (len(split.train.images), len(split.val.images), len(split.test.images)) == (12, 4, 4)


def test_fer2013_with_expressions_missing_or_no_training_rows_splits_per_expression(olivetti_uint8, tmp_path):
    # A walk's CSV of 30 rows with two expressions and no test rows: the split offered 1 training face per
    # expression (five empty ones counted as the smallest); one with only test rows loaded, then Train said
    # "the training split is empty".
    faces, _ = olivetti_uint8
    rows = ["emotion,pixels,Usage"]
    for i in range(30):
        usage = "PrivateTest" if i >= 15 else "Training"
        rows.append(f"{3 + i % 2},{' '.join(map(str, cv2.resize(faces[i], (48, 48)).ravel()))},{usage}")
    for name, lines in (("notest.csv", rows[:16]), ("onlytest.csv", rows[:1] + rows[16:])):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        ds = load_fer2013(path)
        assert ds.names == ["happy", "sad"] and ds.usage is None
        split = split_dataset(ds, train_per_person=5, val_per_person=1)
        assert len(split.train.images) == 2 * 4 and len(split.test.images) == 15 - 10


def test_fer2013_missing_columns_and_garbage(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,image\n1,2\n")
    with pytest.raises(BadInputError, match="missing column"):
        load_dataset(str(path))
    path.write_bytes(b"\xff\xfe\x00garbage\x00\x00")
    with pytest.raises(BadInputError):
        load_dataset(str(path))
    path.write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 2304) + ",Training\nx,1,Training\n")
    with pytest.raises(BadInputError, match="at least 2 different expressions \\(1 row\\(s\\) skipped; bad.csv line 3"):
        load_dataset(str(path))


def test_fer2013_of_bad_rows_is_refused_early_and_skips_are_capped(olivetti_uint8, tmp_path):
    # 500,000 rows of "0,1,x" used to be read whole, with one record per bad row: 161 MB for a 2.9 MB file.
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + "0,1,x\n" * 500_000)
    with pytest.raises(BadInputError, match="first 1000 rows are all unusable.*bad.csv line 2: 1 pixel values"):
        load_fer2013(path)
    faces, _ = olivetti_uint8
    path.write_text(_fer_csv(faces) + "0,1 2,Training\n" * 300)
    ds = load_fer2013(path)
    assert len(ds.images) == 20 and len(ds.skipped) == 201  # 200 listed, then one line counting the others
    assert ds.skipped[-1].path == "bad.csv: 100 more rows"


def _fake_lfw_cache(root: Path, faces: np.ndarray) -> None:
    """scikit-learn's LFW cache layout: lfw_home/ with the pairs files and lfw_funneled/Name/Name_0001.jpg."""
    home = root / "lfw_home"
    home.mkdir(parents=True)
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        (home / name).write_text("")
    for person, name in enumerate(["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]):
        folder = home / "lfw_funneled" / name
        folder.mkdir(parents=True)
        for j in range(4 if person < 2 else 2):
            canvas = np.full((250, 250), 90, np.uint8)
            canvas[60:200, 55:195] = cv2.resize(faces[person * 10 + j], (140, 140))
            cv2.imwrite(str(folder / f"{name}_{j + 1:04d}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))  # LFW is RGB


def test_lfw_from_local_cache(olivetti_uint8, tmp_path, monkeypatch):
    faces, _ = olivetti_uint8
    _fake_lfw_cache(tmp_path, faces)
    ds = load_lfw(min_faces=3, data_home=str(tmp_path), download=False)
    assert ds.names == ["Ada Lovelace", "Alan Turing"] and len(ds.images) == 8
    assert ds.images.shape[1:] == (64, 64)
    monkeypatch.setenv("FACELAB_DATA_HOME", str(tmp_path))
    assert len(load_dataset("lfw:min_faces=2").names) == 3
    # The Data page's slider goes to 100: said in words, not as "bad option in data spec ... too restrictive".
    with pytest.raises(BadInputError, match="^LFW: fewer than 2 people have 100 or more images here; lower"):
        load_dataset("lfw:min_faces=100")


def test_an_olivetti_folder_that_does_not_exist_is_named_so(tmp_path):
    with pytest.raises(BadInputError, match="nowhere: no such folder"):
        load_dataset(f"olivetti:{tmp_path / 'nowhere'}")


def test_lfw_offline_without_cache_is_a_clear_error(tmp_path):
    with pytest.raises(FaceLabError, match="LFW is not in the local cache"):
        load_lfw(data_home=str(tmp_path), download=False)


def test_spec_parsing():
    assert parse_spec("synthetic:people=5,seed=2") == ("synthetic", "", {"people": "5", "seed": "2"})
    assert parse_spec("olivetti:/data/o") == ("olivetti", "/data/o", {})
    assert parse_spec("x/people.ZIP")[0] == "zip" and parse_spec("fer.csv")[0] == "fer2013"
    assert parse_spec("some/folder")[0] == "folder"
    with pytest.raises(BadInputError, match="bad option"):
        load_dataset("synthetic:people=many")
    with pytest.raises(BadInputError, match="unknown option.* peeple .*synthetic takes people, per_person, seed"):
        load_dataset("synthetic:peeple=3")  # a typo is not silently ignored


def test_missing_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="notes.txt: not a folder, a .zip or a FER2013 .csv"):
        load_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(BadInputError, match="no such folder"):
        load_dataset(os.path.join("does", "not", "exist"))


def test_an_uploaded_csv_loads_under_its_own_name(olivetti_uint8):
    faces, _ = olivetti_uint8
    ds = load_upload("../my fer.csv", _fer_csv(faces).encode())
    assert len(ds.images) > 0 and "my_fer.csv" in ds.source and ".." not in ds.source


def test_odd_zips_are_refused_with_a_message(olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    good = {f"{p}/{j}.png": _png(faces[k * 10 + j]) for k, p in enumerate("ab") for j in range(3)}
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        for name, data in good.items():
            zf.writestr(name, data)
    cases = {
        "encrypted": (patch_zip_headers(stored.getvalue(), 6, 8, 0x1), "cannot be read .*encrypted"),  # flag bit 0
        "method 99": (patch_zip_headers(stored.getvalue(), 8, 10, 99), "cannot be read .*compression"),
        "file beside folder": (_zip_of({"a": b"x", **good}), "cannot be unpacked"),
        "long name": (_zip_of({**good, "b/" + "x" * 300 + ".png": _png(faces[0])}), "cannot be unpacked"),
    }
    for case, (data, message) in cases.items():
        path = tmp_path / f"{case}.zip"
        path.write_bytes(data)
        with pytest.raises(BadInputError, match=f"^{case}.zip: .*{message}"):
            load_dataset(str(path))


def test_an_empty_zip_is_named_in_its_message(tmp_path):
    path = tmp_path / "empty.zip"
    path.write_bytes(_zip_of({}))
    with pytest.raises(BadInputError, match=r"^empty.zip: no sub-folders") as err:
        load_dataset(str(path))
    assert "facelab-zip-" not in str(err.value)  # it named the temporary folder it was unpacked in
