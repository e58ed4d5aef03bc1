"""Access: who may call amends. For now, API keys for integrations; staff logins and roles join later.

Keys are shown once at creation and stored only as a SHA-256 of their secret part.
"""

from amends.access.api_keys import ApiKey, Scope, authenticate, create_key, list_keys, revoke_key

__all__ = ["ApiKey", "Scope", "authenticate", "create_key", "list_keys", "revoke_key"]
