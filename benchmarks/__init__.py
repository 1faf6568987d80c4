"""Benchmarks: tritonshm against tritonclient and against a plain memory copy,
side by side in one run. `python -m benchmarks --help`."""
