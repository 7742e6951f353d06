"""Benchmarks for hystrix-actors: ``python -m benchmarks`` (``make bench``)."""
