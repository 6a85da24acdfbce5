#!/usr/bin/env python3
"""A minimal witness, written from docs/audit-format.md §7 alone, with
python3 and the openssl command: it checks the log's signature on a
checkpoint note (as verify_note.py does) and adds its own cosignature/v1
line, then prints the note with the line added, ready for
POST /v1/audit/checkpoints/cosignatures.

The witness key file holds a signed-note private key,
PRIVATE+KEY+NAME+HASH+BASE64 (0x01 || 32-byte Ed25519 seed), as
golang.org/x/mod/sumdb/note.GenerateKey writes it. A real witness also
keeps the last size it co-signed and checks a consistency proof to the
new one before signing (GET /v1/audit/proofs/consistency); this one does
not.

Usage: cosign_note.py WITNESS_KEY_FILE NOTE LOG_VKEY > COSIGNED_NOTE
"""
import base64
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verify_note import ED25519_SPKI, ed25519_verify, key_hash, parse_vkey  # noqa: E402

ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def main(key_file, note_file, log_vkey):
    priv1, priv2, name, _, key_b64 = open(key_file).read().strip().split("+", 4)
    seed = base64.b64decode(key_b64, validate=True)
    if priv1 != "PRIVATE" or priv2 != "KEY" or seed[0] != 0x01 or len(seed) != 33:
        sys.exit("not an Ed25519 signed-note private key")
    raw = open(note_file, "rb").read()
    i = raw.rfind(b"\n\n")
    text = raw[: i + 1]
    log_name, _, log_key = parse_vkey(log_vkey)
    want = key_hash(log_name, 0x01, log_key)
    ok = False
    for line in raw[i + 2:].decode("utf-8").splitlines():
        n, b64 = line[2:].split(" ")
        sig = base64.b64decode(b64, validate=True)
        if n == log_name and sig[:4] == want and ed25519_verify(log_key, text, sig[4:]):
            ok = True
    if not ok:
        sys.exit("the log's signature does not verify: not co-signing")
    t = int(time.time())
    msg = b"cosignature/v1\ntime %d\n" % t + text
    with tempfile.TemporaryDirectory() as d:
        der = os.path.join(d, "key.der")
        with open(der, "wb") as f:
            f.write(ED25519_PKCS8 + seed[1:])
        pub = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", der, "-pubout", "-outform", "DER"],
                             capture_output=True, check=True).stdout
        if not pub.startswith(ED25519_SPKI) or len(pub) != len(ED25519_SPKI) + 32:
            sys.exit("openssl gave no Ed25519 public key")
        m = os.path.join(d, "msg")
        with open(m, "wb") as f:
            f.write(msg)
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-keyform", "DER", "-inkey", der, "-rawin", "-in", m],
                             capture_output=True, check=True).stdout
    line = key_hash(name, 0x04, pub[len(ED25519_SPKI):]) + t.to_bytes(8, "big") + sig
    sys.stdout.buffer.write(raw + ("\u2014 %s %s\n" % (name, base64.b64encode(line).decode())).encode("utf-8"))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
