"""The errors a user can fix: the one type the command line and the service report as a
message, without a traceback."""


class UserError(ValueError):
    """Input a user can fix (file, flag, setting); the message alone says what and where.

    The command line prints it as one line without a traceback.
    """


class ConfigError(UserError):
    """A configuration value is unusable; the message names the field and the value."""
