"""The run's pipeline: decide (pure) → apply (outlet, store) → summary."""
