"""Video files: typed errors, limits, probing, decoding by frame index (PyAV or TorchCodec), live
sources and their decoding threads (feed), isolated workers for untrusted files, writing test and
synthetic videos."""
