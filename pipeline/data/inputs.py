"""What a profile trains on, as one small file the training stages depend on.

data/inputs/<profile>.json names the prepared dataset, the hash of its content and, with
ImageNet initialisation, the prepared weights and their hash. DVC reruns training when this
file changes, i.e. when the data or the weights do (see pipeline.dvcgen for why it exists).
"""
from __future__ import annotations

from pathlib import Path

from ..io import write_json
from . import format as fmt
from .download import sha256_file

INPUTS_DIR = "data/inputs"


def write_inputs(profile: str, want: dict, generated_for: dict, data_dir: str = "data",
                 out_dir: str = INPUTS_DIR) -> dict:
    """want: {"dataset", "weights"} from params; generated_for: what data/dvc.yaml declared."""
    if want != generated_for:
        raise SystemExit(f"error: data/dvc.yaml is stale for profile {profile!r}: params.yaml asks "
                         f"for {want}, the stage was generated for {generated_for}; run "
                         f"`python -m pipeline.dvcgen` and commit dvc.yaml and data/dvc.yaml")
    meta = fmt.read_meta(str(Path(data_dir) / want["dataset"]))
    manifest = {"profile": profile, "dataset": want["dataset"],
                "content_sha256": meta["content_sha256"], "splits": meta["splits"],
                "weights": want["weights"],
                "weights_sha256": sha256_file(want["weights"]) if want["weights"] else None}
    write_json(Path(out_dir) / f"{profile}.json", manifest)
    return manifest
