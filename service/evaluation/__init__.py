"""Offline evaluation only: the recommendation protocol and metrics, the baselines, the drift
streams and detectors, synthetic catalogs for the scale benchmarks.

It measures the service's own code (windows, loaders, profiler, recommender), never copies of
it. Scripts and tests import it; nothing that serves does (the layer contract in
``pyproject.toml`` checks).
"""
