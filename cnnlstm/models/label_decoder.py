"""Autoregressive per-frame label decoder (being written)."""
