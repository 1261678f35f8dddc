"""Secrets at rest (Fernet, key derived from the settings' secret key) and password hashing (scrypt)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

# OWASP's password storage guidance for scrypt (N=2^17, r=8, p=1: 128 MB and ~0.3 s a hash here); hashes made
# with a lower N are replaced at the next successful login (needs_rehash)
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
_MAXMEM = 256 * 1024 * 1024


class Crypto:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(("cardsms-fernet:" + secret_key).encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._sign_key = hashlib.sha256(("cardsms-sign:" + secret_key).encode()).digest()
        self._plain: dict[str, str] = {}  # token -> plain text: an access key's secret is decrypted per API call

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        plain = self._plain.get(token)
        if plain is not None:
            return plain
        try:
            plain = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("cannot decrypt a stored secret: was CARDSMS_SECRET_KEY changed?") from None
        if len(self._plain) >= 10_000:
            self._plain.clear()
        self._plain[token] = plain
        return plain

    def sign(self, data: bytes) -> str:
        """An HMAC-SHA1 signature in base64 (the object-store POST policy form)."""
        return base64.b64encode(hmac.new(self._sign_key, data, hashlib.sha1).digest()).decode()

    def verify(self, data: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(data), signature)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=_MAXMEM, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, dk = stored.split("$")
        if int(n) > 2**20 or int(r) > 16 or int(p) > 4:
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), dk)


def needs_rehash(stored: str) -> bool:
    """True when `stored` was made with weaker parameters than hash_password uses now."""
    parts = stored.split("$")
    try:
        return len(parts) != 6 or (int(parts[1]), int(parts[2]), int(parts[3])) < tuple(_SCRYPT.values())
    except ValueError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash to check a password against when no user matched, so that a login for an unknown name takes as
    long as one for a known name (the time would tell which names exist)."""
    return hash_password(secrets.token_urlsafe(16))


def new_access_key() -> tuple[str, str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    key_id = "LTAI" + "".join(secrets.choice(alphabet) for _ in range(20))
    secret = "".join(secrets.choice(alphabet) for _ in range(30))
    return key_id, secret
