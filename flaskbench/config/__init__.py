"""Reading the benchmark config: the TOML file, its tables and the command line's overrides."""
