"""What users look at: gradient checks, benchmarks, drawings, summaries, plots."""
