"""Whether a machine holds its speed: exported models timed pass after pass, each alone and then in
alternating passes (``otx_anomaly.deploy.speed.latencies_ms``, what ``export_speed.py`` and
``optimize`` use), on the same test frames.

A core that slows down under sustained load, or a shared machine that drifts, shows as passes that
differ from the first; engines timed one after the other would then compare different machine
states. The models are any exports (``python -m otx_anomaly export`` and ``optimize``, or a
``model.xml`` pair of your own); their speed does not depend on how long they were trained.

With ``--threads 1 2`` each model is also an engine per thread count (OpenVINO's
``INFERENCE_NUM_THREADS``), so the rounds show whether a slow spell hits one core's work or the
threads' cooperation.

    python benchmarks/pass_series.py --root ../shared/data/bsdata_ball_screw --category ball_screw_drive \\
        --models fp32/model.xml int8/model.xml
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def main() -> None:
    from bench_data import dataset_parser

    parser = dataset_parser(__doc__)
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="exported model.xml files")
    parser.add_argument("--images", type=int, default=20, help="test frames per pass (the first, sorted by path)")
    parser.add_argument("--passes", type=int, default=30, help="passes of each model alone")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (of 3 passes each)")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts to time each model on, each an "
                        "engine of its own (default: the inferencer's, all cores)")
    args = parser.parse_args()

    from otx_anomaly.deploy import OpenVINOInferencer
    from otx_anomaly.deploy.speed import CPU_CONFIG, cpu_description, latencies_ms
    from otx_anomaly.io.layout import mvtec_split

    images = sorted(t.path for t in mvtec_split(args.root, args.category, "test"))[: args.images]
    engines = {}
    for path in args.models:
        for threads in args.threads or [None]:
            name = str(path) if threads is None else f"{path} ({threads} threads)"
            config = None if threads is None else {**CPU_CONFIG, "INFERENCE_NUM_THREADS": threads}
            engines[name] = OpenVINOInferencer(path, config=config)
    inputs = {name: [engine.preprocess(image)[0] for image in images] for name, engine in engines.items()}
    print(f"CPU: {cpu_description()}")
    print(f"{len(images)} frames of {args.root / args.category} per pass, batch 1, ms per image\n")
    for name, engine in engines.items():
        time.sleep(10)  # a rest before each series, as a camera that has been idle
        series = []
        for _ in range(args.passes):
            start = time.perf_counter()
            for tensor in inputs[name]:
                engine.infer(tensor)
            series.append((time.perf_counter() - start) / len(images) * 1000.0)
        print(f"{name} alone, pass after pass: " + " ".join(f"{ms:.1f}" for ms in series))
    first = next(iter(engines))
    print(f"\nAlternating rounds (median of 3 passes each), ratio = {first} / each:")
    for number in range(args.rounds):
        latency = latencies_ms({name: (engine.infer, inputs[name]) for name, engine in engines.items()}, 3)
        print(f"round {number + 1}: " + ", ".join(f"{name} {ms:.2f} ms ({latency[first] / ms:.2f}x)"
                                                   for name, ms in latency.items()))


if __name__ == "__main__":
    main()
