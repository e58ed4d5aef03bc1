"""Access: who may call amends. API keys for integrations (and staff's own keys), passwords and sessions for the
staff console.

Secrets are stored only as hashes: API keys and session tokens as SHA-256 (they are 256 random bits), passwords
as Argon2id.
"""

from amends.access.api_keys import ApiKey, Scope, authenticate, create_key, list_keys, revoke_key

__all__ = ["ApiKey", "Scope", "authenticate", "create_key", "list_keys", "revoke_key"]
