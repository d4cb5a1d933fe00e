"""Benchmark: one CEN training step, fused layers vs the straightforward per-modality loop.

Prints milliseconds per step (median of repeated timings) for both implementations of the
SAME network and parameters, their speed ratio, the largest output difference, and the peak
memory of a mini-profile training run. Usage (from the repository root):

    python benchmarks/bench_step.py [--profile mini] [--variant cen] [--steps 20] [--threads N]

Figures are printed, not asserted: the goal (fused >= 1.3x faster, identical outputs, mini
training peak memory < 2 GB) is read off the output.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params, train_settings  # noqa: E402
from pipeline.models import build_model, segmentation_loss  # noqa: E402
from pipeline.models.reference import as_reference  # noqa: E402


def time_steps(model, x, y, lam, steps, repeats=5):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        ce, _ = segmentation_loss(model(x), y, 255)
        opt.zero_grad(set_to_none=True)
        (ce + lam * model.l1_penalty()).backward()
        opt.step()

    for _ in range(3):
        step()
    per_step = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if x.is_cuda:
            torch.cuda.synchronize()
        per_step.append((time.perf_counter() - t) / steps * 1e3)
    return statistics.median(per_step)


def peak_memory_of_training(profile: str, epochs: int = 2) -> str:
    """Peak memory of training one variant (all seeds, as the train stage does: on CPU the
    seeds run in parallel worker processes) for a couple of epochs of the profile.

    The process tree is sampled every 0.1 s. RSS counts the ~0.7 GB of torch's shared libraries
    once per process; PSS splits shared pages between the processes that map them, so the sum
    of PSS is the memory the tree really occupies."""
    import psutil

    code = f"""
import dataclasses, sys, tempfile, torch
sys.path.insert(0, '.')
from pipeline.config import load_params, train_settings
from pipeline.data.synthetic import generate
from pipeline.train.runs import train_variant
if __name__ == '__main__':
    p = load_params(); p.tree['profile'] = '{profile}'
    s = train_settings(p, 'cen'); sp = p.tree['profiles']['{profile}']['synthetic']
    s = dataclasses.replace(s, train=dataclasses.replace(s.train, epochs={epochs}))
    with tempfile.TemporaryDirectory() as d:
        generate(d + '/synthetic', n_trainval=sp.n_trainval, val_fraction=sp.val_fraction,
                 n_test=sp.n_test, height=sp.height, width=sp.width, seed=sp.seed)
        train_variant(s, d, d + '/runs', torch.device('cpu'))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pss = rss = 0
        try:
            for pr in [root, *root.children(recursive=True)]:
                info = pr.memory_full_info()
                pss, rss = pss + info.pss, rss + info.rss
        except psutil.Error:
            pass
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.1)
    if proc.returncode:
        raise RuntimeError("the training run failed")
    return (f"{peak_pss / 2**20:.0f} MiB summed PSS ({peak_rss / 2**20:.0f} MiB summed RSS, "
            f"which counts torch's shared libraries once per process)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--variant", default="cen")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    p = load_params()
    p.tree["profile"] = args.profile
    s = train_settings(p, args.variant)
    sp = p.tree["profiles"][args.profile]["synthetic"]
    device = torch.device(args.device)
    torch.manual_seed(0)
    fused = build_model(s.model, s.variant, s.modalities, 12, s.theta).to(device)
    with torch.no_grad():                    # a realistic share of exchanged channels (~1/3)
        for pt in fused.points:
            pt.bn.weight[::3] = s.theta / 2
    loop = as_reference(fused)
    b = s.train.batch_size
    x = torch.randn(b, len(s.modalities), 3, sp.height, sp.width, device=device)
    y = torch.randint(0, 12, (b, sp.height, sp.width), device=device)
    with torch.no_grad():
        fused.eval(), loop.eval()
        diff = (fused(x) - loop(x)).abs().max().item()
        fused.train(), loop.train()

    print(f"profile={args.profile} variant={args.variant} device={device} "
          f"threads={torch.get_num_threads()} batch={b} input={sp.height}x{sp.width} "
          f"modalities={','.join(s.modalities)}")
    t_loop = time_steps(loop, x, y, s.lam, args.steps)
    t_fused = time_steps(fused, x, y, s.lam, args.steps)
    print(f"loop reference : {t_loop:8.1f} ms/step")
    print(f"fused (ours)   : {t_fused:8.1f} ms/step")
    print(f"speed-up       : {t_loop / t_fused:8.2f}x   (goal >= 1.3x)")
    print(f"max |output difference| (eval mode): {diff:.2e}")
    if not args.no_memory and device.type == "cpu":
        print(f"peak memory of {args.profile} training (one variant, all seeds in parallel): "
              f"{peak_memory_of_training(args.profile)}   (goal < 2 GB)")
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
