"""Contrastive training of dual encoders on a catalog's own (image, text) pairs, and
evaluation of the result. `lookalike train` and `lookalike eval` call into here."""
