"""What the train and evaluate stages do for one variant, over all seeds of the profile.

runs/<variant>/run.json          variant, seeds and the data it trained on (written last)
runs/<variant>/seed<k>/          config.json, last.pt, best.pt, gammas.npz, live/ (DVCLive)
results/<variant>.json           val and test metrics of each seed's best-on-validation epoch
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from ..config import EvalParams, TrainSettings
from ..data.loader import SegmentationSplit
from ..io import write_json
from .evaluate import evaluate
from .loop import fingerprint, make_model, train_run


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the stage process dies (even by SIGKILL), so no orphan
    keeps writing into runs/ while a restarted stage resumes from the same checkpoints."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _train_seed(s: TrainSettings, seed: int, root: Path, run_dir: Path, device: str,
                threads: int) -> None:
    torch.set_num_threads(threads)
    train = SegmentationSplit(root, "train", s.modalities)
    val = SegmentationSplit(root, "val", s.modalities)
    train_run(s, seed, train, val, run_dir, torch.device(device))


def seed_workers(n_seeds: int, device: torch.device) -> tuple[int, int]:
    """(processes, threads each). On CPU the seeds train side by side, one thread each: small
    convs leave a thread pool mostly idle, so k processes x 1 thread train ~1.6x faster than
    one process x k threads on 2 cores. On a GPU, one process trains the seeds in turn."""
    if device.type != "cpu" or n_seeds == 1:
        return 1, torch.get_num_threads()
    procs = min(n_seeds, os.cpu_count() or 1)
    return procs, max(1, (os.cpu_count() or 1) // procs)


def train_variant(s: TrainSettings, data_dir: str, runs_dir: str, device: torch.device) -> None:
    root = Path(data_dir) / s.dataset
    out = Path(runs_dir) / s.variant.name
    out.mkdir(parents=True, exist_ok=True)
    # runs/<variant> persists between repros (so a killed run can resume): drop seeds that the
    # profile no longer lists, and the summary, which is rewritten only once all seeds are done.
    (out / "run.json").unlink(missing_ok=True)
    keep = {f"seed{k}" for k in s.seeds}
    for d in out.iterdir():
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d)
    procs, threads = seed_workers(len(s.seeds), device)
    jobs = [(s, seed, root, out / f"seed{seed}", str(device), threads) for seed in s.seeds]
    if procs == 1:
        for job in jobs:
            _train_seed(*job)
    else:
        ctx = multiprocessing.get_context("spawn")     # no fork of a process holding torch threads
        with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_die_with_parent) as pool:
            for f in [pool.submit(_train_seed, *job) for job in jobs]:
                f.result()                             # re-raises a worker's error here
    write_json(out / "run.json", {"variant": s.variant.name, "seeds": list(s.seeds),
                                  "dataset": s.dataset, "profile": s.profile,
                                  "modalities": list(s.modalities)})


def evaluate_variant(variant: str, dataset: str, params: EvalParams, data_dir: str,
                     runs_dir: str, results_dir: str, device: torch.device) -> dict:
    run_root = Path(runs_dir) / variant
    if not (run_root / "run.json").is_file():
        raise FileNotFoundError(f"{run_root}/run.json not found: train variant {variant!r} first "
                                f"(dvc repro train_{variant})")
    run = json.loads((run_root / "run.json").read_text())
    if run["dataset"] != dataset:
        raise ValueError(f"runs/{variant} was trained on {run['dataset']!r} but params.yaml "
                         f"dataset is {dataset!r}; accepted: retrain (dvc repro)")
    root = Path(data_dir) / dataset
    splits = {name: SegmentationSplit(root, name, tuple(run["modalities"]))
              for name in ("val", "test")}
    seeds, cfg = {}, {}
    for seed in run["seeds"]:
        run_dir = run_root / f"seed{seed}"
        cfg = json.loads((run_dir / "config.json").read_text())
        best = torch.load(run_dir / "best.pt", map_location=device, weights_only=True)
        if best["fingerprint"] != fingerprint(cfg):
            raise ValueError(f"{run_dir}/best.pt was trained with another config or code "
                             f"version than config.json and pipeline/ describe; retrain (dvc repro)")
        model = make_model(cfg, cfg["num_classes"]).to(device)
        model.load_state_dict(best["model"])
        seeds[str(seed)] = {"best_epoch": best["epoch"],
                            **{name: evaluate(model, sp, params.batch_size, device)
                               for name, sp in splits.items()}}
    result = {"variant": variant, "factors": cfg["factors"], "modalities": run["modalities"],
              "profile": run["profile"], "dataset": dataset, "device": str(device),
              "train_device": cfg["device"], "seeds": seeds}
    write_json(Path(results_dir) / f"{variant}.json", result)
    return result
