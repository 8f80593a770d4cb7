"""The gateway's Lambda authorizer: `Authorization: Bearer <key>` -> the caller's API key.

API Gateway takes API keys from `x-api-key`, but llmcloud's contract (and every OpenAI
client) sends `Authorization: Bearer <key>`. This function hands the bearer token to API
Gateway as the usage identifier; API Gateway itself then checks the key against the usage
plan (rate, burst, quota). It runs inside Lambda with only the standard library.
"""

from __future__ import annotations

import hashlib


def handler(event: dict, context: object) -> dict:
    """A TOKEN authorizer: allow the whole stage for a bearer token, 401 without one."""
    scheme, _, key = (event.get("authorizationToken") or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Exception("Unauthorized")  # API Gateway's signal for 401
    # arn:aws:execute-api:region:account:api-id/stage/METHOD/path -> .../api-id/stage/*
    api, stage = event["methodArn"].split("/")[:2]
    return {
        "principalId": hashlib.sha256(key.encode()).hexdigest()[:16],
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow",
                           "Resource": f"{api}/{stage}/*"}],
        },
        "usageIdentifierKey": key,
    }
