import sys

from flaskbench.cli import main

sys.exit(main())
