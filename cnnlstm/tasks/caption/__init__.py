"""Captioning: a sentence per clip (task, text and vocabulary, generation, metrics, attention plot,
the synthetic captioned videos)."""
