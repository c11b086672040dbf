"""Tiny randomly-initialised Wan2.2-Animate components in the real module classes, for tests, demos and benchmarks."""
