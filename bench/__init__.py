"""Benchmarks of the running stack: `make bench` prints a table and writes JSON results."""
