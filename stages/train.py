"""DVC stage: train one variant for every seed of the profile into runs/<variant>/."""
import argparse

from pipeline.config import load_params, train_settings
from pipeline.device import pick_device
from pipeline.train.runs import train_variant

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True)
    args = ap.parse_args()
    settings = train_settings(load_params(), args.variant)   # validates before any work
    train_variant(settings, data_dir="data", runs_dir="runs", device=pick_device())
