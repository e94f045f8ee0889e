"""Benchmarks run by hand (`make bench`), never by `make test`: they take minutes, not seconds."""
