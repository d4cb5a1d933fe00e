"""pipeline.data.download against a local faulty HTTP server (127.0.0.1 only, no internet)."""
import hashlib
import json
import random
import socket

import pytest

from httpfixture import serve
from pipeline.data import download as D
from pipeline.data.sources import Artefact

PAYLOAD = random.Random(0).randbytes(200_003)   # odd size: halves and ranges are not round
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FILENAME = "grp/thing.bin"


@pytest.fixture
def server():
    with serve() as srv:
        srv.files["/f"] = PAYLOAD
        yield srv


@pytest.fixture
def sleeps(monkeypatch):
    """Record back-off delays instead of sleeping."""
    got = []
    monkeypatch.setattr(D.time, "sleep", got.append)
    return got


def art(*urls, size=len(PAYLOAD), sha256=SHA, name="thing"):
    return Artefact(name, "test", FILENAME, tuple(urls), "test", size=size, sha256=sha256)


def get(artefact, tmp_path, **kw):
    kw = {"retries": 2, "backoff_s": 0.01, "timeout_s": 5.0, "progress": False, **kw}
    return D.fetch(artefact, raw_dir=tmp_path / "raw", lock_path=tmp_path / "sources.lock", **kw)


def dead_url():
    """A port that was bound and closed again: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/f"


def dest_of(tmp_path):
    return tmp_path / "raw" / FILENAME


def part_of(tmp_path):
    return tmp_path / "raw" / (FILENAME + ".part")


def test_clean_download(server, tmp_path):
    out = get(art(server.url("/f")), tmp_path, progress=True)
    assert out == dest_of(tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert D.sha256_file(out) == SHA
    assert not part_of(tmp_path).exists()
    assert server.requests == [("/f", None)]
    assert not (tmp_path / "sources.lock").exists()   # published checksum: nothing to record


def test_resume_after_cut_connection(server, tmp_path):
    server.faults["/f"] = ["cut"]
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/f", None), ("/f", f"bytes={len(PAYLOAD) // 2}-")]
    assert not part_of(tmp_path).exists()


def test_cuts_that_bring_bytes_do_not_use_up_retries(server, tmp_path, sleeps):
    server.faults["/f"] = ["cut"] * 3   # each cut still delivers half of what was left
    out = get(art(server.url("/f")), tmp_path, retries=1)
    assert out.read_bytes() == PAYLOAD
    assert len(server.requests) == 4 and sleeps == []


def test_resume_after_timeout(server, tmp_path):
    server.faults["/f"] = ["stall"]
    out = get(art(server.url("/f")), tmp_path, timeout_s=0.3)
    assert out.read_bytes() == PAYLOAD
    assert server.requests[1] == ("/f", f"bytes={len(PAYLOAD) // 2}-")


def test_resume_part_left_by_killed_run(server, tmp_path):
    part_of(tmp_path).parent.mkdir(parents=True)
    part_of(tmp_path).write_bytes(PAYLOAD[:1234])
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/f", "bytes=1234-")]


def test_complete_part_gets_416_and_is_verified(server, tmp_path):
    part_of(tmp_path).parent.mkdir(parents=True)
    part_of(tmp_path).write_bytes(PAYLOAD)
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/f", f"bytes={len(PAYLOAD)}-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    part_of(tmp_path).parent.mkdir(parents=True)
    part_of(tmp_path).write_bytes(b"x" * 5000)   # wrong bytes: appending to them would corrupt
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/f", "bytes=5000-")]


def test_server_ignoring_range_after_cut(server, tmp_path):
    server.honour_range = False
    server.faults["/f"] = ["cut"]
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]


@pytest.mark.parametrize("wrong", [{"sha256": "ab" * 32}, {"size": len(PAYLOAD) + 1}])
def test_checksum_mismatch_leaves_nothing(server, tmp_path, wrong):
    with pytest.raises(D.DownloadError, match="mismatch") as e:
        get(art(server.url("/f"), **wrong), tmp_path)
    msg = str(e.value)
    assert server.url("/f") in msg and "\n" not in msg
    assert (SHA if "sha256" in wrong else str(len(PAYLOAD))) in msg   # the actual value
    assert str(next(iter(wrong.values()))) in msg                     # the expected value
    assert not dest_of(tmp_path).exists()
    assert not part_of(tmp_path).exists()


def test_404_is_permanent_and_explains_what_to_do(server, tmp_path, sleeps):
    url = server.url("/missing")
    with pytest.raises(D.DownloadError) as e:
        get(art(url, name="nyudv2_splits"), tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("nyudv2_splits: could not download ")
    assert url in msg and "HTTP 404" in msg
    assert str(dest_of(tmp_path)) in msg
    assert "sources.mirrors.nyudv2_splits=URL" in msg
    assert server.requests == [("/missing", None)]
    assert sleeps == []


def test_404_moves_on_to_next_url(server, tmp_path):
    out = get(art(server.url("/missing"), server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/missing", "/f"]


def test_refused_connection_bounded_retries(tmp_path, sleeps):
    url = dead_url()
    with pytest.raises(D.DownloadError, match="refused") as e:
        get(art(url), tmp_path, retries=3)
    assert url in str(e.value)
    assert sleeps == [0.01, 0.02, 0.04]   # 3 retries, exponential back-off
    assert not dest_of(tmp_path).exists()


def test_503_then_success(server, tmp_path, sleeps):
    server.faults["/f"] = ["503"]
    out = get(art(server.url("/f")), tmp_path)
    assert out.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert sleeps == [0.01]


def test_persistent_503_gives_up(server, tmp_path, sleeps):
    server.faults["/f"] = ["503"] * 10
    with pytest.raises(D.DownloadError, match="HTTP 503"):
        get(art(server.url("/f")), tmp_path, retries=2)
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]


def test_preplaced_correct_file_needs_no_network(server, tmp_path):
    dest_of(tmp_path).parent.mkdir(parents=True)
    dest_of(tmp_path).write_bytes(PAYLOAD)
    assert get(art(server.url("/f")), tmp_path) == dest_of(tmp_path)
    assert server.requests == []


@pytest.mark.parametrize("bad", [PAYLOAD[:-10], b"\0" + PAYLOAD[1:]], ids=["truncated", "corrupt"])
def test_preplaced_bad_file_is_moved_aside(server, tmp_path, bad):
    dest = dest_of(tmp_path)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(bad)
    with pytest.raises(D.DownloadError, match="rejected") as e:
        get(art(server.url("/f")), tmp_path)
    assert "\n" not in str(e.value)
    assert not dest.exists()
    assert dest.with_name(dest.name + ".rejected").read_bytes() == bad
    assert server.requests == []


def test_trust_on_first_use(server, tmp_path):
    a = art(server.url("/f"), size=None, sha256=None)
    get(a, tmp_path)
    lock_path = tmp_path / "sources.lock"
    entry = {"sha256": SHA, "size": len(PAYLOAD), "url": server.url("/f")}
    assert D.ChecksumLock(lock_path).get("thing") == entry
    assert lock_path.read_text() == json.dumps({"thing": entry}, indent=2, sort_keys=True) + "\n"

    # the host now serves different bytes: they must not replace the recorded ones
    dest_of(tmp_path).unlink()
    server.files["/f"] = PAYLOAD[::-1]
    with pytest.raises(D.DownloadError, match="mismatch") as e:
        get(a, tmp_path)
    assert SHA in str(e.value) and "sources.lock" in str(e.value)
    assert not dest_of(tmp_path).exists() and not part_of(tmp_path).exists()
    assert D.ChecksumLock(lock_path).get("thing") == entry


def test_lock_keeps_other_entries_sorted(tmp_path):
    lock = D.ChecksumLock(tmp_path / "sub" / "sources.lock")
    assert lock.get("b") is None
    lock.record("b", "11", 1, "u1")
    lock.record("a", "22", 2, None)
    data = json.loads(lock.path.read_text())
    assert list(data) == ["a", "b"]
    assert data["b"] == {"sha256": "11", "size": 1, "url": "u1"}
    assert lock.get("a")["sha256"] == "22"


def test_published_prefix(server, tmp_path):
    out = get(art(server.url("/f"), size=None, sha256=SHA[:8]), tmp_path)
    assert out.read_bytes() == PAYLOAD
    wrong = ("0" if SHA[0] != "0" else "1") + SHA[1:8]
    with pytest.raises(D.DownloadError, match=wrong):
        get(art(server.url("/f"), size=None, sha256=wrong), tmp_path / "again")


def test_mirror_replaces_urls(server, tmp_path):
    server.files["/wrong"] = b"not it"
    out = get(art(server.url("/wrong"), dead_url()), tmp_path, mirror=server.url("/f"))
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/f", None)]


def test_file_mirror(tmp_path):
    copy = tmp_path / "copy.bin"
    copy.write_bytes(PAYLOAD)
    out = get(art(dead_url()), tmp_path, mirror=copy.as_uri())
    assert out.read_bytes() == PAYLOAD


def test_missing_file_mirror_is_permanent(tmp_path, sleeps):
    url = (tmp_path / "nope.bin").as_uri()
    with pytest.raises(D.DownloadError, match="sources.mirrors.thing") as e:
        get(art(dead_url()), tmp_path, mirror=url)
    assert url in str(e.value)
    assert sleeps == []
