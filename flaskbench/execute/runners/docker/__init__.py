"""The docker runner: compose stacks per cell on the engines the placement names (runner.py),
with their containers sampled (sampling.py), the hosts' clocks read (clocks.py) and the images
put on every host (distribution.py); compose stacks themselves in compose.py."""
