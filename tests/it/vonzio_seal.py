#!/usr/bin/env python3
"""Seals values the way vonzio does, with an implementation independent of
the importer: HKDF-SHA256 (ikm = the passphrase's UTF-8 bytes, the value's
16-byte salt, info `vonzio-encryption` or `reclaude-encryption`, 32 bytes),
AES-256-GCM with a 12-byte IV and no associated data, stored as hex
`salt:iv:ciphertext:tag`.

Reads {"key": passphrase, "values": [{"plaintext": str, "info": str}]} as
JSON on stdin (the key never in argv); prints the sealed values as a JSON
list.
"""

import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def seal(passphrase: str, plaintext: str, info: str) -> str:
    salt = os.urandom(16)
    iv = os.urandom(12)
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=info.encode()
    ).derive(passphrase.encode("utf-8"))
    sealed = AESGCM(key).encrypt(iv, plaintext.encode("utf-8"), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return ":".join(part.hex() for part in (salt, iv, ciphertext, tag))


def main() -> None:
    request = json.load(sys.stdin)
    json.dump(
        [seal(request["key"], v["plaintext"], v["info"]) for v in request["values"]],
        sys.stdout,
    )


if __name__ == "__main__":
    main()
