"""flaskbench: how many concurrent requests does one Flask process really handle? Measured.

Stages, each a module, data flowing one way: config -> plan -> run (runners/) -> collect ->
analyze (with theory) -> report.
"""

from pathlib import Path

__version__ = "0.1.0"
# The checkout: targets/, locustfiles/, compose/ and scripts/ are read from here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
