"""A run directory: the files a run writes, and how they are written and checked."""
