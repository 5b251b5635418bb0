"""Tooling for tests, benchmarks and demos without hardware; no node's runtime imports it."""
