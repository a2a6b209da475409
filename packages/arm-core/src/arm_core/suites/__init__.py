"""Benchmark suites: generate in each benchmark's own layout (GenEval, DPG-Bench, WISE, GEdit-Bench,
ImgEdit, the offline ShapesWorld ``shapes`` suite) and score the outputs with registered scorers."""
