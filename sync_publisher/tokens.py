"""Sync access tokens for the agent's browser (twilio SDK's AccessToken + SyncGrant)."""

from __future__ import annotations

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import SyncGrant

MAX_TOKEN_TTL_S = 24 * 3600


def mint_sync_token(
    *,
    account_sid: str,
    api_key: str,
    api_secret: str,
    service_sid: str,
    identity: str,
    ttl_s: int,
) -> str:
    if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
        raise ValueError("token TTL must be between 1 s and 24 h")
    token = AccessToken(account_sid, api_key, api_secret, identity=identity, ttl=ttl_s)
    token.add_grant(SyncGrant(service_sid=service_sid))
    jwt: str = token.to_jwt()
    return jwt
