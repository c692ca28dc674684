"""Fuzzing targets and measurements; see fuzz/README.md."""
