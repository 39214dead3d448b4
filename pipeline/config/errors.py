"""The two ways a run config can be wrong: unusable (`ConfigError`) or legal but probably not meant
(`ConfigWarning`). A leaf of the package, so every other config module can raise them without importing each other."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which."""


class ConfigWarning(UserWarning):
    """A key that does nothing in this mode, or values that contradict each other without being unusable."""
