"""Benchmarks of the deploy on sandbox hosts (`make bench`); results in docs/performance.md."""
