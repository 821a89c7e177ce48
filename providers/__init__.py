"""LLM providers behind one protocol: a model catalogue and a token stream.

Errors (each carries a Russian ``user_message`` that says how to fix the problem)::

    ProviderError
    ├── ConfigurationError        key or setting missing
    ├── AuthenticationError       key rejected or token expired
    ├── RateLimitError            too many requests (``retry_after`` seconds, if known)
    ├── ModelNotFoundError        no such model, or no access to it
    ├── InvalidRequestError       the request was refused as malformed
    │   └── ContextTooLongError   prompt does not fit the model's window
    ├── ProviderUnavailableError  server down or unreachable
    │   └── ProviderTimeoutError  no answer in time (not retried)
    └── StreamInterruptedError    the stream broke mid-answer (``partial`` keeps the text)
"""

from providers.base import (
    AuthenticationError,
    ChatMessage,
    Completion,
    ConfigurationError,
    ContextTooLongError,
    Fragment,
    GenerationParams,
    InvalidRequestError,
    ModelInfo,
    ModelNotFoundError,
    Provider,
    ProviderError,
    ProviderStatus,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
    Usage,
)
from providers.registry import PROVIDER_NAMES, build_providers

__all__ = [
    "PROVIDER_NAMES",
    "AuthenticationError",
    "ChatMessage",
    "Completion",
    "ConfigurationError",
    "ContextTooLongError",
    "Fragment",
    "GenerationParams",
    "InvalidRequestError",
    "ModelInfo",
    "ModelNotFoundError",
    "Provider",
    "ProviderError",
    "ProviderStatus",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "StreamInterruptedError",
    "Usage",
    "build_providers",
]
