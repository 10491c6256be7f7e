import sys

from smartcity.ops.cli import main

sys.exit(main())
