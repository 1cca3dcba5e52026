"""`python -m enrichment.tooling.bench`: the benchmarks, or `serve-fake PORT LATENCY_S`."""

import sys

from enrichment.tooling.bench import main

sys.exit(main(sys.argv[1:]))
