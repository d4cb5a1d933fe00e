"""DVC stage: turn verified raw files into data/<dataset> (the common format) or data/weights/."""
import argparse

from pipeline.config import load_params, prepare_settings
from pipeline.data import prepare

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", choices=sorted(prepare.DATASETS))
    what.add_argument("--weights", choices=sorted(prepare.WEIGHTS))
    args = ap.parse_args()
    if args.dataset:
        options = prepare_settings(load_params(), args.dataset)   # validates before any work
        meta = prepare.prepare_dataset(args.dataset, options)
        print(f"data/{args.dataset}: {meta['splits']}")
    else:
        summary = prepare.prepare_weights(args.weights)
        print(f"data/weights/{args.weights}.pt: {summary}")
