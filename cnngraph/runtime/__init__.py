"""Running plans: the executor, kernels and backends."""
