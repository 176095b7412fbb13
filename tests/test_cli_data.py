"""`python -m facelab data`: summaries, JSON and clear errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from facelab.cli import main
from tests.conftest import ROOT


def test_data_json_olivetti(olivetti_dir, capsys):
    assert main(["data", f"olivetti:{olivetti_dir}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["people"]) == 40 and out["images"] == 400 and out["image_size"] == [64, 64]
    assert out["skipped"] == []


def test_data_json_lists_skipped_files(olivetti_uint8, tmp_path, capsys):
    faces, _ = olivetti_uint8
    for name, p in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        for j in range(2):
            cv2.imwrite(str(tmp_path / name / f"{j}.png"), faces[p * 10 + j])
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    assert main(["data", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 4 and out["skipped"][0]["path"] == "a/bad.png"


def test_data_text_and_error_exit_code(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "facelab", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT, timeout=120)
    ok = run("data", "synthetic")
    assert ok.returncode == 0 and "240 images of 12 people, 64x64" in ok.stdout
    (tmp_path / "x.csv").write_text("nothing,here\n1,2\n")
    bad = run("data", str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and "missing column" in bad.stderr and "Traceback" not in bad.stderr
    empty = run("data", "")  # not the current folder
    assert empty.returncode == 2 and "no data source given" in empty.stderr


@pytest.mark.parametrize("command", ["data", "train", "evaluate", "identify", "live", "capture", "enrol", "models"])
def test_every_command_prints_its_help(command, capsys):
    # Setting help texts are shared with the app, so a "%" in one must not break argparse's formatting.
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_the_library_and_cli_work_without_streamlit():
    # No module of the library imports Streamlit: the pages' shared widgets live in pages/ui.
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['streamlit'] = None\n"
        "import facelab\n"
        "mods = [m.name for m in pkgutil.walk_packages(facelab.__path__, 'facelab.') if m.name != 'facelab.__main__']\n"
        "[importlib.import_module(m) for m in mods]\n"
        "from facelab.cli import main\n"
        "sys.exit(main(['data', 'synthetic', '--json']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"images": 240' in done.stdout
