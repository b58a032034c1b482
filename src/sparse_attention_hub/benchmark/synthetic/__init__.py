"""Generators of the `ruler_synthetic` benchmark: resources, task builders, token-length sizing."""
