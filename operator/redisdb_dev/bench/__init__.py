"""Benchmarks: measurements that are too slow or too big for the test suite, run on demand."""
