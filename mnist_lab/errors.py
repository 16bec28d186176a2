"""Errors a user can cause: each message says what is wrong and how to fix it."""


class UserError(Exception):
    """A mistake the user can fix (bad data, path or config value)."""


class DataNotFoundError(UserError):
    """The dataset files are missing and could not be downloaded."""
