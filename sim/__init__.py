"""mulfree sim."""
