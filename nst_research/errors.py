"""The one exception type for mistakes a user can fix from the command line."""


class UserInputError(ValueError):
    """Bad input (a path, a layer name, a weight): the message says what is wrong and how to fix it."""
