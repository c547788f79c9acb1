"""Throughput, latency, memory and replay benchmark of the worker (see docs/benchmark.md)."""
