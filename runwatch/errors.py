"""The one error root of Runwatch; leaves carry only a docstring."""


class RunwatchError(Exception):
    """Base class for every error Runwatch raises on purpose."""


class ConfigError(RunwatchError):
    """A setting or configuration file is missing or malformed."""


class ValidationError(RunwatchError, ValueError):
    """A value handed to Runwatch by a job author or a caller is malformed."""


class InvalidTenantId(ValidationError):
    """A tenant id is not a positive integer."""


class InvalidSummary(ValidationError):
    """Summary counts hold an unknown key or a value that is not a finite number."""


class InvalidOutcome(ValidationError):
    """An outcome declaration is malformed (unknown outcome, missing reason code, ...)."""
