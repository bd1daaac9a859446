"""Captioning model: CNN encoder, LSTM decoder with attention (being written)."""
