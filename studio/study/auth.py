"""Secrets of reader studies: reader access codes and the admin password.

* Reader access codes are random (12 characters from a 31-symbol alphabet,
  59 bits), shown once and stored as SHA-256: with that much entropy a plain
  hash resists guessing and lets every request find the reader by an index.
* The admin password comes from ``STUDIO_ADMIN_PASSWORD``, else it is
  generated at first start, printed once, and only its scrypt hash (salted)
  is kept in ``<data dir>/admin.json``; it is never printed again.
* Hugging Face sign-in (on a Space): a reader added by Hugging Face username
  gets an access code derived from the username with a server secret
  (HMAC-SHA256 with ``<data dir>/hf_signin.key``, or ``STUDIO_HF_SIGNIN_KEY``).
  Only that code's hash is stored, like any other code: the database never
  holds the username, and nobody can derive a code without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
from pathlib import Path

logger = logging.getLogger("medenhance.studio.auth")

# Crockford-like alphabet: no 0/O, 1/I/L confusions when a code is read aloud or typed.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31 symbols; 12 of them carry 59.4 bits
CODE_LENGTH = 12
ADMIN_FILE = "admin.json"
HF_KEY_FILE = "hf_signin.key"
# Hugging Face usernames: letters, digits, '-', '_' and '.', not starting with a symbol.
HF_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# scrypt cost: ~50 ms per check, 16 MiB memory; a wrong admin password is slow to guess.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def _dashed(raw: str) -> str:
    """``"K7PDQ2XM9HTA"`` -> ``"K7PD-Q2XM-9HTA"`` (dashes for reading; ignored when checked)."""
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def new_access_code() -> str:
    """A fresh reader code such as ``"K7PD-Q2XM-9HTA"``."""
    return _dashed("".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)))


def normalize_code(code: object) -> str:
    """What a reader typed -> canonical form: upper case, no spaces or dashes ('' for junk)."""
    if not isinstance(code, str):
        return ""
    text = "".join(ch for ch in code.upper() if ch.isalnum())
    return text if len(text) <= 64 else ""


def hash_code(code: object) -> str:
    """SHA-256 hex of a normalized access code (what the database stores and indexes)."""
    return hashlib.sha256(("medenhance-reader:" + normalize_code(code)).encode()).hexdigest()


def hf_signin_key(data_dir: str | os.PathLike[str]) -> bytes:
    """The server secret for Hugging Face sign-in codes: ``STUDIO_HF_SIGNIN_KEY``, else
    ``<data_dir>/hf_signin.key`` (32 random bytes, created once with mode 0600)."""
    env = os.environ.get("STUDIO_HF_SIGNIN_KEY", "")
    if env:
        return env.encode()
    path = Path(data_dir) / HF_KEY_FILE
    try:  # O_EXCL: two processes starting at once agree on one key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise RuntimeError(f"{path} is damaged (too short); delete it: Hugging Face readers must then be added again")
    return key


def hf_access_code(key: bytes, study_id: int, username: str) -> str:
    """The access code of Hugging Face user ``username`` in study ``study_id`` (same form as
    :func:`new_access_code`). Usernames are case-insensitive, as on the Hub."""
    digest = hmac.new(key, f"medenhance-hf:{int(study_id)}:{username.strip().lower()}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    raw = ""
    for _ in range(CODE_LENGTH):
        number, i = divmod(number, len(CODE_ALPHABET))
        raw += CODE_ALPHABET[i]
    return _dashed(raw)


def _scrypt(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT).hex()


class AdminAuth:
    """Checks the study admin password.

    Args:
        data_dir: where ``admin.json`` (salted scrypt hash) lives.
        env_password: ``STUDIO_ADMIN_PASSWORD`` if set: it wins and nothing is written.
    """

    def __init__(self, data_dir: str | os.PathLike[str], env_password: str | None = None) -> None:
        self.path = Path(data_dir) / ADMIN_FILE
        self._env = env_password or None
        self._salt = b""
        self._hash = ""
        # In memory only: after one scrypt check, the right password is recognised by an HMAC under this key.
        self._memo_key = secrets.token_bytes(32)
        self._verified: bytes | None = None
        if self._env is None:
            self._load_or_create()

    def _load_or_create(self) -> None:
        if not self.path.exists():
            password = secrets.token_urlsafe(12)
            salt = secrets.token_bytes(16)
            record = {"algorithm": "scrypt", **_SCRYPT, "salt": salt.hex(), "hash": _scrypt(password, salt)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: if two processes start at once only one creates (and prints) a password.
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    json.dump(record, f)
                # Printed once, to the console of whoever started the server; only the hash is kept.
                print(f"\n*** MedEnhance Studio: study admin password (shown once, not stored): {password}\n"
                      f"*** Set STUDIO_ADMIN_PASSWORD to choose your own, or delete {self.path} "
                      "to generate a new one.\n", file=sys.stderr, flush=True)
        try:
            record = json.loads(self.path.read_text())
            self._salt = bytes.fromhex(record["salt"])
            self._hash = str(record["hash"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"cannot read the admin password hash {self.path}: {e}; "
                               "delete the file to generate a new password") from None

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._memo_key, password.encode(), hashlib.sha256).digest()

    def quick_check(self, password: object) -> bool | None:
        """The answer of :meth:`check` when it is cheap (microseconds), None when it needs scrypt.

        True for ``STUDIO_ADMIN_PASSWORD``, and for the generated password once :meth:`check` verified
        it in this process (an HMAC under a per-process random key is kept, never the password);
        False for a wrong ``STUDIO_ADMIN_PASSWORD`` or an empty/overlong/non-text value. This is what
        lets :mod:`studio.guard` pass the right password through a flood of wrong ones.
        """
        if not isinstance(password, str) or not password or len(password) > 256:
            return False
        if self._env is not None:
            return hmac.compare_digest(password.encode(), self._env.encode())
        verified = self._verified
        if verified is not None and hmac.compare_digest(self._digest(password), verified):
            return True
        return None

    def check(self, password: object) -> bool:
        """True when ``password`` is the admin password (constant-time comparison)."""
        quick = self.quick_check(password)
        if quick is not None:
            return quick
        assert isinstance(password, str)  # quick_check answered every other type
        ok = hmac.compare_digest(_scrypt(password, self._salt), self._hash)
        if ok:
            self._verified = self._digest(password)
        return ok
