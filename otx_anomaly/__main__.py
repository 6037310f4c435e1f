import sys

from otx_anomaly.cli import main

sys.exit(main())
