"""DVC stage: evaluate every seed of one variant (best-on-validation checkpoint) -> results/."""
import argparse

from pipeline.config import eval_settings, load_params
from pipeline.device import pick_device
from pipeline.train.runs import evaluate_variant

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True)
    args = ap.parse_args()
    dataset, params = eval_settings(load_params())
    evaluate_variant(args.variant, dataset, params, data_dir="data", runs_dir="runs",
                     results_dir="results", device=pick_device())
