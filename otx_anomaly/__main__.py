"""``python -m otx_anomaly``: ``infer`` runs without importing torch; every other command is the CLI's."""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["infer"]:  # before anything imports torch, Lightning or anomalib
        from otx_anomaly.cli_infer import main as infer_main

        return infer_main(args[1:])
    from otx_anomaly.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
