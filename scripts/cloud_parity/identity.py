"""Google's identity side of the run: an issuer of Google-style ID tokens (RS256, `iss`
accounts.google.com) with a key made for this run, and the checks Cloud Run makes on them.

Every token in the run comes from here: the push identity's tokens (Pub/Sub signs pushes), the
Eventarc trigger's, an operator's, and those the metadata server hands a function. The front
doors know this issuer's keys as Cloud Run knows Google's.
"""

from __future__ import annotations

import base64
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://accounts.google.com"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"


class Refused(Exception):
    """A token Cloud Run would not accept (answered 401)."""


class Issuer:
    """Signs ID tokens as Google does for a service account or a user."""

    def __init__(self) -> None:
        self.kid = "cloud-parity-1"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self.key.public_key()

    def jwks(self) -> dict:
        numbers = self.public.public_numbers()

        def b64(n: int) -> str:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                          "n": b64(numbers.n), "e": b64(numbers.e)}]}

    def id_token(self, email: str, audience: str, lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": audience, "azp": email, "sub": str(abs(hash(email)) % 10**21),
            "email": email, "email_verified": True, "iat": now, "exp": now + lifetime,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str, audiences: list[str]) -> dict:
        """The claims of a token this issuer signed for one of `audiences`, or `Refused`."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise Refused(f"unknown signing key {header.get('kid')!r}")
            return jwt.decode(token, self.public, algorithms=["RS256"], audience=audiences,
                              issuer=ISSUERS, options={"require": ["exp", "iat", "aud", "iss"]})
        except jwt.PyJWTError as e:
            raise Refused(str(e)) from e


def strip_signature(token: str) -> str:
    """The token as Cloud Run hands it to the container once it has checked it."""
    header, payload, _signature = token.split(".")
    return f"{header}.{payload}.{SIGNATURE_REMOVED}"


def member(email: str) -> str:
    """The IAM member an ID token's `email` is."""
    if email.endswith(".gserviceaccount.com"):
        return f"serviceAccount:{email}"
    return f"user:{email}"
