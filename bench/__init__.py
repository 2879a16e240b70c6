"""Benchmarks that print figures and write JSON to bench/results/ (not tests)."""
