"""mulfree model."""
