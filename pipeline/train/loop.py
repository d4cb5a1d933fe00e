"""One training loop for every variant (paper §4.1 and the official code's recipe).

Loss = Σ over outputs (each modality and the ensemble) of cross-entropy + λ Σ|γ̂| (Eq. 4; the
ℓ1 term is added once per step — the official code adds it once per output, i.e. 3x).
SGD, momentum and weight decay from params; encoder and decoder learning rates separate,
halved every `lr_halve_every` epochs. The checkpoint used for testing is the epoch with the
best validation ensemble mIoU (the official code picks it on the test split; we never do).

Reproducible and resumable: everything random in epoch e (shuffling, augmentation, dropout)
is seeded from (seed, e), and a checkpoint holding model, optimiser, scheduler, the γ history
and the per-epoch log is written atomically after every epoch. A killed run restarts from its
last checkpoint and ends with the same metrics as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import TrainSettings
from ..data.loader import SegmentationSplit
from ..io import atomic_write, write_json
from ..models import build_model, segmentation_loss
from .evaluate import evaluate, output_names


class NonFiniteLoss(RuntimeError):
    pass


# The code that defines what a run computes. runs/<variant> persists between repros so a killed
# run can resume; DVC reruns the stage when this code changes, and the fingerprint then makes
# the run start afresh instead of "resuming" a run trained by the old code.
_PKG = Path(__file__).resolve().parents[1]
CODE = [*sorted((_PKG / "models").glob("*.py")), *sorted((_PKG / "train").glob("*.py")),
        _PKG / "data" / "loader.py", _PKG / "data" / "format.py"]


def code_hash() -> str:
    h = hashlib.sha256()
    for f in CODE:
        h.update(f.relative_to(_PKG).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def fingerprint(config: dict) -> str:
    """What must match for a checkpoint to be resumed: the run's config (device excluded:
    resuming elsewhere is fine) and the code that trains it."""
    keep = {k: v for k, v in config.items() if k != "device"}
    keep["code"] = code_hash()
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _save(obj, path: Path) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch + 1


def make_model(cfg: dict, num_classes: int):
    from ..models import ModelSpec, get_variant
    from ..config import MethodParams
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()})
    return build_model(spec, get_variant(cfg["variant"]), cfg["modalities"], num_classes,
                       cfg.get("theta", 0.0), MethodParams(**cfg["method"]).detach_ensemble)


def train_run(s: TrainSettings, seed: int, train: SegmentationSplit, val: SegmentationSplit,
              run_dir: Path, device: torch.device, log=print,
              stop_after_epoch: int | None = None) -> dict:
    """Train one (variant, seed); returns the run's config. `stop_after_epoch` simulates a kill."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {**s.to_dict(), "seed": seed, "device": str(device), "num_classes": len(train.classes),
           "classes": train.classes}
    fp = fingerprint(cfg)
    write_json(run_dir / "config.json", cfg)
    name = f"{s.variant.name}/seed{seed}"

    torch.manual_seed(seed)
    model = make_model(cfg, len(train.classes))
    if s.weights:      # paper §4.1: the encoder starts from ImageNet (prepared by data/dvc.yaml)
        from ..models.pretrained import load_imagenet
        load_imagenet(model, torch.load(s.weights, map_location="cpu", weights_only=True))
    model = model.to(device)
    enc, dec = model.param_groups()
    tp = s.train
    opt = torch.optim.SGD([{"params": enc, "lr": tp.lr_encoder}, {"params": dec, "lr": tp.lr_decoder}],
                          momentum=s.optim.momentum, weight_decay=s.optim.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, tp.lr_halve_every, gamma=0.5)

    state = {"epoch": 0, "step": 0, "best_score": -1.0, "best_epoch": -1, "log": [],
             "gamma_steps": [], "gammas": [[] for _ in model.points]}
    ckpt = run_dir / "last.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        if saved.get("fingerprint") == fp:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            state = saved["state"]
            log(f"[{name}] resuming after epoch {state['epoch']}")
        else:
            log(f"[{name}] checkpoint is from another configuration: starting afresh")

    live = _open_live(run_dir / "live", state["log"])
    outputs = output_names(s.modalities)
    n_batches = len(train) // tp.batch_size            # drop_last, as the official code
    if n_batches == 0:
        raise ValueError(f"[{name}] batch_size {tp.batch_size} exceeds the {len(train)} "
                         f"training samples; accepted: batch_size <= {len(train)}")
    augment = (tp.scale_min, tp.scale_max, tp.flip)
    for epoch in range(state["epoch"], tp.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return cfg
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(seed, epoch))      # dropout
        g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        perm = torch.randperm(len(train), generator=g)
        model.train()
        if tp.freeze_bn_stats:        # official code when fine-tuning (see TrainParams)
            for m in model.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        sums = torch.zeros(len(outputs) + 1, device=device)
        for b in range(n_batches):
            x, y = train.batch(perm[b * tp.batch_size:(b + 1) * tp.batch_size], augment, g)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            ce, per_output = segmentation_loss(model(x), y, train.ignore_index)
            l1 = model.l1_penalty() if s.lam > 0 else torch.zeros((), device=device)
            loss = ce + s.lam * l1
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"run {name}: non-finite loss ({loss.item()}) at step "
                                    f"{state['step'] + 1} (epoch {epoch + 1}); lower the learning rates")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            sums += torch.cat([per_output, l1.detach()[None]])
            if state["step"] % tp.gamma_log_every == 0:
                state["gamma_steps"].append(state["step"])
                for hist, gm in zip(state["gammas"], model.gammas()):
                    hist.append(gm.cpu().clone())
        sched.step()

        val_scores = evaluate(model, val, s.eval.batch_size, device)
        means = (sums / n_batches).tolist()
        record = {f"train/loss/{o}": means[i] for i, o in enumerate(outputs)}
        record["train/l1"] = means[-1]
        record.update({f"val/{k}/{o}": v for o, sc in val_scores.items() for k, v in sc.items()})
        record["train/frac_replaced"] = _replaced_fraction(model)
        record.update(_gamma_summary(model))
        state["log"].append(record)
        _log_live(live, record)
        state["epoch"] = epoch + 1
        score = val_scores["ensemble"]["miou"]
        if score > state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch + 1
            _save({"fingerprint": fp, "epoch": epoch + 1, "model": model.state_dict()},
                  run_dir / "best.pt")
        _save({"fingerprint": fp, "model": model.state_dict(), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "state": state}, ckpt)
        log(f"[{name}] epoch {epoch + 1}/{tp.epochs} loss {sum(means[:-1]):.3f} "
            f"val mIoU ens {score:.3f} ({time.perf_counter() - t0:.1f}s)")

    _write_gammas(run_dir / "gammas.npz", model, state, s.modalities)
    live.end()
    return cfg


def _replaced_fraction(model) -> float:
    """Share of exchange-region channels currently replaced (0 for variants without exchange)."""
    num = den = 0
    for p in model.points:
        if p.exchange.enabled:
            num += int(p.exchange.mask(p.bn.gamma()).sum())
            den += int(p.exchange.allowed.sum())
    return num / den if den else 0.0


def _gamma_summary(model) -> dict:
    """For DVCLive, per exchange layer and modality: mean |γ| of the ℓ1-penalised channels (γ̂)
    and of the rest. Every channel's γ over training goes to gammas.npz (Figure 5's data)."""
    out = {}
    for i, p in enumerate(model.points):
        g = p.bn.gamma().detach().abs().cpu()
        for m, name in enumerate(model.modalities):
            for part, sel in (("penalised", p.sparse[m].cpu()), ("rest", ~p.sparse[m].cpu())):
                if sel.any():
                    out[f"gamma/layer{i}/{name}/{part}"] = float(g[m][sel].mean())
    return out


def _open_live(live_dir: Path, past: list[dict]):
    """A fresh DVCLive log that first replays the epochs a resumed run already logged, so the
    files end up as an uninterrupted run writes them."""
    from dvclive import Live
    live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
    for record in past:
        _log_live(live, record)
    return live


def _log_live(live, record: dict) -> None:
    for k, v in record.items():
        live.log_metric(k, v)
    live.next_step()


def _write_gammas(path: Path, model, state: dict, modalities) -> None:
    arrays = {"steps": np.asarray(state["gamma_steps"], dtype=np.int64),
              "modalities": np.asarray(modalities), "n_layers": np.asarray(len(model.points))}
    for i, (p, hist) in enumerate(zip(model.points, state["gammas"])):
        c = p.bn.c
        arrays[f"gamma_{i}"] = (torch.stack(hist).numpy().astype(np.float32) if hist
                                else np.zeros((0, len(modalities), c), np.float32))
        arrays[f"sparse_{i}"] = p.sparse.cpu().numpy()
        arrays[f"allowed_{i}"] = p.exchange.allowed.cpu().numpy() if p.exchange.enabled \
            else np.zeros((len(modalities), c), bool)

    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    atomic_write(path, write)
