"""Peak memory of PaDiM's fit against the number of training images: otx_anomaly (running sums)
versus anomalib's own Padim (memory bank), each fit in a fresh process, in one run.

Generated images (the demo dataset), resnet18, 256x256, 100 features, batch 32, CPU.

    python benchmarks/padim_memory.py --sizes 50 200 800 --plot docs/padim_memory.png
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path


def fit_once(implementation: str, root: str) -> None:
    """Runs in a child process; prints its peak resident set size in MiB."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import lightning.pytorch as pl
    from anomalib.models import Padim as AnomalibPadim

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim

    pl.seed_everything(0, verbose=False)
    model = Padim(pre_trained=False) if implementation == "otx_anomaly" else AnomalibPadim(pre_trained=False,
                                                                                         visualizer=False)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(model, datamodule=MVTecDataModule(root=root, category="demo", num_workers=0))
    assert model.model.gaussian.inv_covariance.numel() > 0
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    args = parser.parse_args()
    from otx_anomaly.data import make_demo_dataset

    results: dict[str, list[float]] = {"otx_anomaly": [], "anomalib": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = make_demo_dataset(Path(tmp) / str(size), n_train=size, n_test_good=2, n_test_defect=1)
            for implementation, peaks in results.items():
                out = subprocess.run([sys.executable, __file__, "--child", implementation, str(root)],
                                     check=True, capture_output=True, text=True).stdout
                peaks.append(json.loads(out.strip().splitlines()[-1])["peak_mib"])
    print("| training images | " + " | ".join(f"{s}" for s in args.sizes) + f" | growth {args.sizes[0]}->"
          f"{args.sizes[-1]} |")
    print("|---|" + "---|" * (len(args.sizes) + 1))
    for implementation, peaks in results.items():
        growth = peaks[-1] / peaks[0] - 1
        print(f"| {implementation} peak RSS (MiB) | " + " | ".join(f"{p:.0f}" for p in peaks) + f" | {growth:+.0%} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        for implementation, peaks in results.items():
            axis.plot(args.sizes, peaks, marker="o", label=implementation)
        axis.set_xlabel("training images")
        axis.set_ylabel("peak resident memory (MiB)")
        axis.set_title("PaDiM fit, resnet18, 256x256, 100 features")
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        fit_once(sys.argv[2], sys.argv[3])
    else:
        main()
