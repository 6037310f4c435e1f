"""The benchmark tool: ``python -m benchmarks quality | speed | thresholds | tiling | memory``, run from the
repository root.

Each subcommand prints its tables and writes them into its own section of ``docs/benchmarks.md``
(``--output``), with the command, the date, the CPU and the library versions; running it again
replaces that section only (``speed``: only this kind of CPU's; ``tiling``: only the models it ran).
Where README.md has the summary's markers, its table is written again from the sections.
``--quick`` runs a small subset (the first dataset, PaDiM, a few images) to check that everything
works; it is what the tests run.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

from benchmarks import quality, speed, thresholds, tiling
from benchmarks.fits import MODELS
from benchmarks.report import DOCS, README, ROOT, Machine, command_line, header, write

SHARED = ROOT.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "resnet18_tv_in1k_layer1-3.safetensors"
#: subcommand: (one line of help, the module whose docstring describes it, its own options)
SUBCOMMANDS = {
    "quality": ("accuracy, fit time and peak memory, ours beside anomalib's", quality, quality.add_arguments),
    "speed": ("eager PyTorch and OpenVINO FP32/FP16/INT8 on this CPU", speed, speed.add_arguments),
    "thresholds": ("image and box thresholds chosen from normal images only", thresholds, thresholds.add_arguments),
    "tiling": ("tiled against resized at the datasets' own resolution, beside anomalib's tiling", tiling,
               tiling.add_arguments),
    "memory": ("PaDiM's fit memory against the number of training images", quality, quality.add_memory_arguments),
}
#: What ``--quick`` sets where the command line does not: a subset small enough for a test.
QUICK = {"max_train": 40, "max_test": 8, "images": 5, "repeats": 2, "calibration": 16, "sizes": [8, 16]}


def _shared_arguments(parser: argparse.ArgumentParser, datasets: bool) -> None:
    if datasets:
        parser.add_argument("--data_dir", type=Path, default=SHARED / "data",
                            help="folder of MVTec-layout dataset roots (default: ../shared/data)")
        parser.add_argument("--datasets", nargs="+", default=None,
                            help="dataset names under --data_dir, or root paths (default: all)")
        parser.add_argument("--category", default=None, help="only this category of each dataset")
        parser.add_argument("--models", nargs="+", default=None, choices=MODELS, help="default: both")
        parser.add_argument("--max_train", type=int, default=None, help="at most this many training images")
        parser.add_argument("--max_test", type=int, default=None, help="at most this many images per test folder")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None,
                        help="resnet18 state-dict file (default: the shared ImageNet weights where present)")
    parser.add_argument("--random_weights", action="store_true", help="random backbone weights (pre_trained: false)")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--quick", action="store_true",
                        help="the first dataset, PaDiM, 40 training and 8 test images per folder: checks, not figures")
    parser.add_argument("--output", type=Path, default=DOCS,
                        help="the Markdown file written (default: docs/benchmarks.md)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="README whose summary markers get the summary (default: README.md when --output is "
                             "docs/benchmarks.md)")
    parser.add_argument("--no_docs", action="store_true", help="print the tables only")


def parser() -> argparse.ArgumentParser:
    """The command line: one subparser per subcommand, the shared options on each."""
    main = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = main.add_subparsers(dest="subcommand", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (summary, module, add_arguments) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        _shared_arguments(sub, datasets=name != "memory")
        add_arguments(sub)
    return main


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The parsed command line, with ``--quick``, ``--random_weights`` and the defaults of
    ``--models`` and ``--readme`` applied.

    Args:
        argv: the arguments after ``python -m benchmarks``.
    """
    args = parser().parse_args(argv)
    if args.random_weights:
        args.weights = None
    if hasattr(args, "models") and args.models is None:
        args.models = ["Padim"] if args.quick else list(MODELS)
    for key, value in QUICK.items() if args.quick else ():
        given = getattr(args, key, False)
        if given is False:  # not an option of this subcommand
            continue
        if given is None or (key == "sizes" and "--sizes" not in argv):
            setattr(args, key, value)
        elif isinstance(given, int):
            setattr(args, key, min(given, value))
    if args.no_docs:
        args.output = args.readme = None
    elif args.readme is None and args.output.resolve() == DOCS:
        args.readme = README
    return args


def _settings(args: argparse.Namespace) -> str:
    weights = f"`{os.path.relpath(args.weights, ROOT)}`" if args.weights else "random"
    parts = [f"resnet18, backbone weights {weights}, {args.image_size}×{args.image_size}"]
    if getattr(args, "max_train", None) or getattr(args, "max_test", None):
        parts.append(f"subset: at most {args.max_train or 'all'} training and {args.max_test or 'all'} test images "
                     "per folder")
    return "Settings: " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand, print its tables and write its section.

    Args:
        argv: the arguments after ``python -m benchmarks``; ``None``: ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # the libraries' own (tracing, Lightning hints): the tables are the output
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available" and tips, once per Trainer
    machine = Machine.here()
    first = header(command_line(args.subcommand, argv[1:]), machine)
    print(first, flush=True)
    log = Path(tempfile.gettempdir()) / "otx_anomaly_benchmarks.log"
    log.write_text(" ".join(argv) + "\n", encoding="utf-8")
    if args.subcommand == "speed":
        speed_table, stages, summary = speed.run(args)
        key = "speed-" + re.sub(r"[^a-z0-9]+", "-", machine.kind.lower()).strip("-")
        body = "\n\n".join([f"### {machine.kind}", first, _settings(args),
                            speed.section(args, speed_table, stages, summary, machine)])
        print(speed_table)
        write(args.output, args.readme, key, body, group="speed")
    elif args.subcommand == "tiling":  # one table per set of models: an STFPM run keeps PaDiM's
        tables, console = tiling.run(args, log)
        print(console)
        key = "tiling-" + "-".join(model.lower() for model in args.models)
        write(args.output, args.readme, key, "\n\n".join([f"### {', '.join(args.models)}", first, _settings(args),
                                                          tables]), group="tiling")
    else:
        if args.subcommand == "thresholds":
            tables, console = thresholds.run(args)
        else:  # fits in fresh processes, which log there
            run = {"quality": quality.run, "memory": quality.run_memory}[args.subcommand]
            tables, console = run(args, log)
        print(console)
        write(args.output, args.readme, args.subcommand, "\n\n".join([first, _settings(args), tables]))
    if args.output:
        print(f"written: {args.output}" + (f" and the summary in {args.readme}" if args.readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
