"""``python -m otx_anomaly``: the CLI (:func:`otx_anomaly.cli.main`)."""

import sys

from otx_anomaly.cli import main

if __name__ == "__main__":
    sys.exit(main())
