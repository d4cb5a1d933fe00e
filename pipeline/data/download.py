"""Fetch one external artefact (pipeline.data.sources) into RAW_DIR: resumable, retried, verified.

The contract a caller can rely on: whatever is at RAW_DIR/<filename> after `fetch` returns has
been verified (published size and sha256, or the committed lock entry), and nothing unverified is
ever placed there. Bytes in flight live in `<dest>.part`, so a cut connection or a killed run
resumes where it stopped. A file put at the destination by hand is verified instead of
downloaded; if it is wrong it is moved aside (never deleted) and the run stops, so the user sees it.

Standard library only (urllib handles http, https and file:// alike) plus tqdm for the bar.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from pipeline.data.sources import LOCK_FILE, RAW_DIR, Artefact
from pipeline.io import write_json

CHUNK = 1 << 20   # 1 MiB: small enough for a smooth bar, large enough not to cost CPU


class DownloadError(RuntimeError):
    """A download or verification failure; the message is one line (it ends up in DVC's log)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class ChecksumLock:
    """Trust-on-first-use record: {name: {"sha256", "size", "url"}} as JSON, committed to git."""

    def __init__(self, path: str | Path = LOCK_FILE):
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise DownloadError(f"{self.path} is not valid JSON ({e}); fix or remove it") from None

    def get(self, name: str) -> dict | None:
        return self._read().get(name)

    @contextmanager
    def _locked(self):
        # The file itself is replaced by rename on every write, so a lock on it would guard a
        # stale inode; lock its directory instead (no stray lock file next to a committed one).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the lock

    def record(self, name: str, sha256: str, size: int, url: str | None) -> None:
        with self._locked():
            entries = self._read()   # re-read under the lock: another fetch may have added one
            entries[name] = {"sha256": sha256, "size": size, "url": url}
            write_json(self.path, entries)   # temp + rename, sorted keys, indent 2: clean diffs


def verify(artefact: Artefact, path: str | Path, lock: ChecksumLock, *,
           url: str | None = None) -> str:
    """Check `path` against the published size/sha256 (a prefix is enough), else the lock entry;
    with neither, record it in the lock (trust on first use). Returns the full sha256."""
    path = Path(path)
    size = path.stat().st_size
    if artefact.size is not None and size != artefact.size:
        raise DownloadError(f"{path}: size mismatch for {artefact.name}: "
                            f"expected {artefact.size} bytes (published), got {size}")
    digest = sha256_file(path)
    if artefact.sha256:
        expected, source = artefact.sha256.lower(), "published"
    elif (entry := lock.get(artefact.name)) is not None:
        expected, source = entry["sha256"].lower(), f"recorded in {lock.path}"
    else:
        lock.record(artefact.name, digest, size, url)
        return digest
    if not digest.startswith(expected):
        raise DownloadError(f"{path}: sha256 mismatch for {artefact.name}: "
                            f"expected {expected} ({source}), got {digest}")
    return digest


class _Transient(Exception):
    """Worth another try at the same URL (refused/reset, timeout, 5xx, short body)."""


class _Permanent(Exception):
    """No point retrying this URL (4xx, a missing local file, a malformed URL)."""


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _download(url: str, part: Path, timeout_s: float, progress: bool, desc: str) -> None:
    """One attempt: append the rest of `url` to `part` (or restart it). Returns once the body is
    complete; raises _Transient or _Permanent otherwise."""
    have = _size(part)
    headers = {"User-Agent": "cen-repro"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return   # nothing left past what we hold: the part is complete, verification decides
        kind = _Transient if e.code >= 500 or e.code in (408, 429) else _Permanent
        raise kind(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        # a local file does not appear by waiting; a network error might go away
        raise (_Permanent if url.startswith("file:") else _Transient)(str(e.reason)) from None
    except ValueError as e:   # malformed URL or unknown scheme
        raise _Permanent(str(e)) from None
    except (OSError, HTTPException) as e:
        raise _Transient(str(e) or type(e).__name__) from None

    with resp:
        # 206 appends; 200 means the server ignored Range (file:// has no status): restart
        resumed = bool(have) and resp.status == 206
        if resumed and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()   # a range we did not ask for: start over rather than guess
            raise _Transient(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else None
        try:
            with open(part, "ab" if resumed else "wb") as f, \
                    tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=desc,
                         file=sys.stderr, disable=not progress, leave=False) as bar:
                # read1: whatever has arrived (up to CHUNK); read() would wait to fill the whole
                # chunk and a timeout mid-way would throw away what was already received
                while chunk := resp.read1(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, HTTPException) as e:
            raise _Transient(str(e) or type(e).__name__) from None
    # http.client returns b"" (no exception) when the peer closes before Content-Length bytes
    if total is not None and _size(part) < total:
        raise _Transient(f"connection closed after {_size(part)} of {total} bytes")


def _try_url(url: str, part: Path, *, retries: int, timeout_s: float, backoff_s: float,
             progress: bool, desc: str) -> str | None:
    """Download `url` into `part` with bounded retries; None on success, else the last reason."""
    used, best = 0, _size(part)
    while True:
        try:
            _download(url, part, timeout_s, progress, desc)
            return None
        except _Permanent as e:
            return str(e)
        except _Transient as e:
            reason = str(e)
        if _size(part) > best:
            # A cut that still brought new bytes does not use up a retry (a 2.8 GB file on a
            # flaky host gets there); `best` only grows, so this cannot loop forever.
            best = _size(part)
            continue
        if used == retries:
            return reason
        time.sleep(backoff_s * 2 ** used)
        used += 1


def fetch(artefact: Artefact, *, raw_dir: str | Path = RAW_DIR, mirror: str | None = None,
          lock_path: str | Path = LOCK_FILE, retries: int = 4, timeout_s: float = 60.0,
          backoff_s: float = 1.0, progress: bool = True) -> Path:
    """Make raw_dir/<filename> a verified copy of `artefact` and return its path.

    `mirror` (params: sources.mirrors.<name>) replaces the artefact's URLs. Each URL gets
    1 + `retries` attempts for transient failures, sleeping backoff_s * 2**k between them.
    """
    dest = Path(raw_dir) / artefact.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = ChecksumLock(lock_path)
    by_hand = (f"Place the file at {dest} (it will be verified) or set a mirror: "
               f"dvc exp run -S sources.mirrors.{artefact.name}=URL")

    if dest.exists():
        try:
            verify(artefact, dest, lock)
            return dest
        except DownloadError as e:
            # It may be the user's only copy: keep it, and stop so they see it was wrong.
            rejected = dest.with_name(dest.name + ".rejected")
            os.replace(dest, rejected)
            raise DownloadError(f"{artefact.name}: the file at {dest} failed verification ({e}); "
                                f"it was moved to {rejected}. {by_hand}") from None

    part = dest.with_name(dest.name + ".part")
    last = "no URL to try"
    for url in [mirror] if mirror else artefact.urls:
        reason = _try_url(url, part, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s,
                          progress=progress, desc=artefact.name)
        if reason is not None:
            last = f"{url}: {reason}"
            continue
        try:
            verify(artefact, part, lock, url=url)
        except DownloadError as e:
            part.unlink(missing_ok=True)   # a wrong body must not be resumed from next time
            raise DownloadError(f"{artefact.name}: checksum mismatch for {url}: {e}; "
                                f"the download was deleted. {by_hand}") from None
        os.replace(part, dest)   # only now, verified, does it appear at dest
        return dest
    raise DownloadError(f"{artefact.name}: could not download {last}. {by_hand}")
