"""The sources table, the download/prepare/inputs stage entry points, offline.

(The download machinery itself is tested against a local HTTP server in test_download.py, and
each prepare function against format-faithful fixtures in test_prepare_*.py.)
"""
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.data import prepare as prep
from pipeline.data import sources
from pipeline.data.download import DownloadError
from pipeline.data.inputs import write_inputs
from pipeline.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


def test_every_artefact_is_complete_and_unique():
    names = [a.name for a in sources.ARTEFACTS]
    files = [a.filename for a in sources.ARTEFACTS]
    assert len(set(names)) == len(names) == 11 and len(set(files)) == len(files)
    for a in sources.ARTEFACTS:
        assert a.urls and all(re.match(r"^https?://", u) for u in a.urls), a.name
        assert a.licence.startswith("https://"), a.name
        if a.sha256:
            assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", a.sha256), a.name
    # torchvision and pytorch-fid name their files after the sha256 prefix they publish.
    for a in sources.in_group("weights"):
        assert a.filename.rsplit("-", 1)[1].removesuffix(".pth") == a.sha256
    # The facts in ../shared/notes/data-sources.md.
    assert sources.get_artefact("nyudv2_splits").size == 2626
    assert sources.get_artefact("nyudv2_classmap40").size == 10474


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]      # closed on exit: nothing listens there


@pytest.fixture
def workdir(tmp_path):
    """A stage's working directory: params.yaml and sources.lock, nothing else."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _stage(args, cwd, **params):
    text = (cwd / "params.yaml").read_text()
    for key, value in params.items():
        text, n = re.subn(rf"(\n\s*{key}:)\s*[^\n#]*", rf"\1 {value} ", text, count=1)
        assert n == 1, key
    (cwd / "params.yaml").write_text(text)
    env = {"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_download_stage_offline_fails_with_one_line_naming_url_path_and_mirror_key(workdir):
    url = f"http://127.0.0.1:{_refused_port()}/splits.mat"
    r = _stage(["stages.download", "--artefact", "nyudv2_splits"], workdir,
               nyudv2_splits=url, retries=0)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in (url, "data/raw/nyudv2/splits.mat", "sources.mirrors.nyudv2_splits"):
        assert part in err, (part, err)
    assert not (workdir / "data/raw/nyudv2/splits.mat").exists()


def test_download_stage_verifies_a_file_placed_by_hand_and_locks_its_hash(workdir):
    placed = workdir / "data/raw/taskonomy/train_domain.txt"
    placed.parent.mkdir(parents=True)
    placed.write_text("point_1_view_0\n")
    # A dead mirror proves no network is touched: the placed file is verified, not fetched.
    r = _stage(["stages.download", "--artefact", "taskonomy_train_views"], workdir,
               taskonomy_train_views=f"http://127.0.0.1:{_refused_port()}/x", retries=0)
    assert r.returncode == 0, r.stderr
    lock = json.loads((workdir / "sources.lock").read_text())
    assert lock["taskonomy_train_views"]["sha256"] == hashlib.sha256(placed.read_bytes()).hexdigest()
    # Swapped afterwards: refused, moved aside, never used.
    placed.write_text("point_2_view_0\n")
    r = _stage(["stages.download", "--artefact", "taskonomy_train_views"], workdir)
    assert r.returncode != 0 and "sha256 mismatch" in r.stderr
    assert not placed.exists() and placed.with_name(placed.name + ".rejected").exists()


def test_bad_mirror_is_refused_before_any_work(workdir):
    r = _stage(["stages.download", "--artefact", "nyudv2_splits"], workdir,
               nyudv2_splits="ftp://example.org/splits.mat")
    assert r.returncode != 0 and "sources.mirrors.nyudv2_splits" in r.stderr
    assert "accepted" in r.stderr and not (workdir / "data").exists()


def test_nothing_unverified_reaches_a_prepare_function(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    calls = []
    from pipeline.data import nyudv2
    monkeypatch.setattr(nyudv2, "prepare", lambda *a, **k: calls.append(a))
    for name in prep.DATASETS["nyudv2"]:
        p = Path(sources.get_artefact(name).path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not the real file")
    # splits.mat has a published size and sha256: this copy fails them.
    with pytest.raises(DownloadError, match="splits.mat"):
        prep.prepare_dataset("nyudv2", options=None)
    assert calls == []
    with pytest.raises(FileNotFoundError, match="download_resnet101_imagenet"):
        prep.prepare_weights("resnet101")


def test_inputs_manifest_names_the_data_and_refuses_a_stale_pipeline(tmp_path):
    generate(str(tmp_path / "synthetic"), n_trainval=4, val_fraction=0.25, n_test=2, height=16,
             width=16, seed=0)
    want = {"dataset": "synthetic", "weights": None}
    m = write_inputs("mini", want, dict(want), data_dir=str(tmp_path), out_dir=str(tmp_path / "in"))
    meta = json.loads((tmp_path / "synthetic" / "meta.json").read_text())
    assert m["content_sha256"] == meta["content_sha256"] and m["splits"] == meta["splits"]
    assert json.loads((tmp_path / "in" / "mini.json").read_text()) == m
    with pytest.raises(SystemExit, match="stale.*pipeline.dvcgen"):
        write_inputs("paper", {"dataset": "nyudv2", "weights": "data/weights/resnet101.pt"},
                     want, data_dir=str(tmp_path), out_dir=str(tmp_path / "in"))
