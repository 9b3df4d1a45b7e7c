"""One module per ``mulfree`` subcommand; each provides ``register(subparsers)``."""
