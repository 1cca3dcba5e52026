import sys

from enrichment.cli import main

sys.exit(main())
