import sys

from tfrf.cli import main

sys.exit(main())
