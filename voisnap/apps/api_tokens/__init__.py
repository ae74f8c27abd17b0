"""API tokens (docs/api-tokens.md): long-lived credentials for REST and ``/v1/*``."""

from .rest import ApiTokensRest
from .tokens import ApiTokens, TokenRefused

__all__ = ["ApiTokens", "ApiTokensRest", "TokenRefused"]
