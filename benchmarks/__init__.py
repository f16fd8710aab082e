"""Throughput and latency benchmarks for Flöde: `make bench` or `python -m benchmarks --help`."""
