"""Errors a user can cause: each message says what is wrong and how to fix it."""

import signal


class UserError(Exception):
    """A mistake the user can fix (bad data, path or config value)."""


class DataNotFoundError(UserError):
    """The dataset files are missing and could not be downloaded."""


class DataCorruptError(UserError):
    """A dataset file that exists but does not hold what its format promises."""


class ConfigError(UserError):
    """A config value outside the range it must lie in."""


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss."""


class Interrupted(Exception):
    """Training was stopped by SIGINT (Ctrl-C) or SIGTERM; the run can be resumed."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")
