"""flaskbench: how many concurrent requests does one Flask process really handle? Measured.

Stages, each a module, data flowing one way: config -> plan -> run (runners/) -> collect ->
analyze (with theory) -> report.
"""

__version__ = "0.1.0"
