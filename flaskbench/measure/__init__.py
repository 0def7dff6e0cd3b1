"""From a run's raw files to measurements: steps, statistics, theory, verdicts."""
