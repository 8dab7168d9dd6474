"""Errors that mean the user must change something; entry points print them as
one line (no traceback) and exit non-zero."""


class UserError(Exception):
  """Bad input: a config value, a path, a missing dataset. Message says what to do."""


class ConfigError(UserError):
  """A config value that cannot work."""


class TrainingDivergedError(UserError):
  """The loss became NaN or infinite."""


def require_positive_ints(config, names, prefix: str = "") -> None:
  """Raises ConfigError naming `--config.<prefix><name>` unless each is an int > 0."""
  for name in names:
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ConfigError(f"{prefix}{name} must be a positive integer, got "
                        f"{value!r}; set --config.{prefix}{name}")
