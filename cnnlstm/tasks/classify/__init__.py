"""Classification: one label per clip (task, metrics, confusion plot, the temporal-order synthetic dataset)."""
