"""From a config to the cells of a run, and where each side of them runs."""
