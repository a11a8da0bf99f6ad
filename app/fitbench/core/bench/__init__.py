"""Benchmark protocol: configurations, the child-process worker, and the sweep runner."""
