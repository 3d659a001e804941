"""Benchmarks (not tests): each module exposes ``BENCHMARKS = {name: fn}``; fn() returns figures."""
