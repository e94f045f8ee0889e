"""End-to-end harnesses shared by the tests and the benchmarks in bench/."""
