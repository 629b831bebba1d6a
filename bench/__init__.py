"""Benchmarks (never run as tests): ``python -m bench.run``; see docs/benchmarks.md."""
