"""Speed and memory benchmarks, one harness (benchmarks.harness) and one report shape; run from the repository root
as modules, e.g. `python -m benchmarks.step --size tiny --device cpu`. Results: benchmarks/results/*.json."""
