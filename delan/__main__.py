import sys

from delan.cli import main

sys.exit(main())
