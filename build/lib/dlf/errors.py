"""User errors: a ConfigError prints as one line (`dlf: error: ...`) with exit code 2."""


class ConfigError(ValueError):
    """An invalid configuration or input, with a message that names the key and what is allowed."""
