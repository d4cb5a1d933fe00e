"""Figures for the paper-scale data path, measured offline (printed, not asserted).

1. Download: a file served by a local http.server on 127.0.0.1 is fetched by
   pipeline.data.download.fetch (streamed, hashed, renamed into place): throughput and the
   process's peak RSS growth (streaming must keep memory flat whatever the file size).
2. NYUDv2 prepare: a labeled .mat in the real layout (HDF5, reversed axes, 480x640) with
   --frames random frames, prepared with the default crop: frames/s, bytes per prepared frame,
   and the time extrapolated to the real 1,449 frames.

    python benchmarks/bench_data.py [--mb 256] [--frames 60]
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.data import nyudv2  # noqa: E402
from pipeline.data.download import fetch  # noqa: E402
from pipeline.data.sources import Artefact  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_download(tmp: Path, mb: int) -> None:
    served = tmp / "served"
    served.mkdir()
    blob = served / "blob.bin"
    rng = np.random.default_rng(0)
    with open(blob, "wb") as f:                       # written in pieces: keep our RSS flat
        for _ in range(mb):
            f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/blob.bin"
    art = Artefact("bench", "bench", "bench/blob.bin", (url,), "-", size=blob.stat().st_size,
                   sha256=digest)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    fetch(art, raw_dir=tmp / "raw", lock_path=tmp / "lock", progress=False)
    dt = time.perf_counter() - t0
    server.shutdown()
    print(f"download {mb} MB over 127.0.0.1 (stream + sha256 + verify + rename): {dt:.2f} s, "
          f"{mb / dt:.0f} MB/s; peak RSS growth {peak_rss_mb() - before:.0f} MB")


def bench_nyudv2(tmp: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    n, h, w = frames, 480, 640
    mat = tmp / "labeled.mat"
    with h5py.File(mat, "w", userblock_size=512) as f:
        specs = {"images": ((n, 3, w, h), np.uint8), "depths": ((n, w, h), np.float32),
                 "rawDepths": ((n, w, h), np.float32), "labels": ((n, w, h), np.uint16)}
        ds = {k: f.create_dataset(k, shape, dtype, chunks=(1,) + shape[1:])
              for k, (shape, dtype) in specs.items()}
        for i in range(n):   # smooth content plus noise: compresses worse than real frames
            yy, xx = np.mgrid[0:w, 0:h]
            base = (np.sin(xx / (17 + i)) + np.cos(yy / (23 + i))) * 60 + 128
            ds["images"][i] = np.clip(base[None] + rng.normal(0, 8, (3, w, h)), 0, 255)
            ds["depths"][i] = (1.5 + base / 60 + rng.normal(0, 0.01, (w, h))).astype(np.float32)
            ds["rawDepths"][i] = ds["depths"][i]
            ds["labels"][i] = ((xx // 40 + yy // 40) % 894 + 1).astype(np.uint16)
    train = np.arange(1, n // 2 + 1)
    test = np.arange(n // 2 + 1, n + 1)
    scipy.io.savemat(tmp / "splits.mat", {"trainNdxs": train.reshape(-1, 1).astype(float),
                                          "testNdxs": test.reshape(-1, 1).astype(float)})
    cell = np.empty((1, 40), dtype=object)
    cell[0, :] = [f"c{k}" for k in range(40)]
    scipy.io.savemat(tmp / "classMapping40.mat",
                     {"mapClass": (np.arange(894) % 40 + 1).reshape(1, -1).astype(float),
                      "className": cell})
    out = tmp / "nyudv2"
    t0 = time.perf_counter()
    nyudv2.prepare(str(mat), str(tmp / "splits.mat"), str(tmp / "classMapping40.mat"), str(out),
                   crop=(6, 474, 7, 632), val_fraction=0.1, seed=0, progress=False)
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"nyudv2 prepare, {n} frames 480x640 -> 468x625: {dt:.1f} s ({n / dt:.1f} frames/s, "
          f"{size / n / 1e6:.2f} MB per prepared frame); 1,449 frames: ~{1449 * dt / n / 60:.1f} min,"
          f" ~{1449 * size / n / 1e9:.1f} GB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_download(Path(d), args.mb)
    with tempfile.TemporaryDirectory() as d:
        bench_nyudv2(Path(d), args.frames)
    print(f"(cpus: {os.cpu_count()})")
