"""The run's machinery: work spread over worker processes (parallel)."""
