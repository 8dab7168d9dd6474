"""Errors that mean the user must change something; entry points print them as
one line (no traceback) and exit non-zero."""


class UserError(Exception):
  """Bad input: a config value, a path, a missing dataset. Message says what to do."""


class ConfigError(UserError):
  """A config value that cannot work."""


class TrainingDivergedError(UserError):
  """The loss became NaN or infinite."""
