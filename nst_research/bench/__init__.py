"""Benchmarks: named sections (`scripts/bench.py --sections gan`), each a list of measured cases."""
