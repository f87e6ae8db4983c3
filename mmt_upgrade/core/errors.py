"""One exception type for bad input, so the CLI can print it as one clear line."""


class UserInputError(ValueError):
    """Bad input from the user: the message names the file, flag or language at fault."""
