"""Multi-label clip classification: every action a clip shows (task, label files and targets,
metrics, AP plot, the simultaneous-motions synthetic dataset)."""
