"""Benchmarks and quality evaluations (`make bench`); not part of `make test`."""
