"""mulfree hw."""
