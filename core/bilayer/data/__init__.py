"""Training and test data: the synthetic membrane tomogram generator (and, later, datasets)."""
