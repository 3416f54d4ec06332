"""The anthropic backend's own errors. None of them ever carries the API key."""

from __future__ import annotations


class AnthropicBackendError(RuntimeError):
    """Base class of this backend's own errors (never carries the API key)."""


class MissingAPIKey(AnthropicBackendError):
    pass


class BudgetExceeded(AnthropicBackendError):
    pass


class BatchTimeout(AnthropicBackendError):
    pass
