"""mulfree boards."""
