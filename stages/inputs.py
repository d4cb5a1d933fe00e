"""DVC stage: record what one profile trains on (dataset content hash, weights) in data/inputs/."""
import argparse

from pipeline.config import inputs_settings, load_params
from pipeline.data.inputs import write_inputs

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--dataset", required=True, help="what the generated stage declares")
    ap.add_argument("--weights", default=None, help="what the generated stage declares")
    args = ap.parse_args()
    want = inputs_settings(load_params(), args.profile)
    manifest = write_inputs(args.profile, want, generated_for={"dataset": args.dataset,
                                                               "weights": args.weights})
    print(f"data/inputs/{args.profile}.json: {manifest['dataset']} {manifest['content_sha256'][:12]}")
