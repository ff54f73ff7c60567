"""Exceptions of the host. Every message names the problem and the fix."""

from __future__ import annotations


class LightlyMMError(Exception):
    """Base class of all errors raised by lightly-mm-plugins."""


class PluginError(LightlyMMError):
    """A plugin could not be loaded, validated or used."""


class UnknownComponentError(LightlyMMError, KeyError):
    """No component of that name is registered (lists the available ones)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ArgumentError(LightlyMMError, TypeError):
    """A component was given an argument it does not accept (lists the ones it does).

    A ``TypeError`` like Python's own "unexpected keyword argument", so code
    that caught that keeps working.
    """


class PluginConflictError(PluginError):
    """Two plugins registered the same name for the same kind."""


class DataError(LightlyMMError, ValueError):
    """Bad input data; the message names the file and line."""


class CheckpointError(LightlyMMError, ValueError):
    """A checkpoint is missing, truncated, or from another method."""


class ConfigError(LightlyMMError, ValueError):
    """A run setting (command-line flag, config file value or ``TrainConfig`` field)
    is invalid; the message names the flag, the value and what is accepted."""


class ResumeMismatchError(CheckpointError):
    """``--resume`` with settings that differ from the checkpoint's run (names each)."""
