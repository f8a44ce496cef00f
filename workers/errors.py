"""Errors raised into the job author's code at the call site."""

from dramatiq.middleware import MiddlewareError

from runwatch.errors import ValidationError


class InvalidSendOptions(ValidationError, MiddlewareError):
    """A tracked actor was sent a malformed Runwatch option (tenant id, initiator, ...).

    A ``MiddlewareError`` so that Dramatiq lets it reach the caller of ``send`` instead of
    logging and swallowing it; the message is not enqueued.
    """


class NotInsideRun(ValidationError):
    """``current_run()`` was called outside a tracked actor's execution."""
