import sys

from monitorctl.cli import main

sys.exit(main())
