"""Fan-out benchmarks: ``python -m bench --help``."""
