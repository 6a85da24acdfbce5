#!/usr/bin/env python3
"""An outsider's check of a trustgate checkpoint note, written from
docs/audit-format.md §8 alone, with python3 and the openssl command (no
trustgate code or binary, no Go):

1. the note is a C2SP signed note: text lines, a blank line, then
   signature lines "\u2014 NAME BASE64";
2. the log's signature (key NAME+HASH+BASE64, algorithm 0x01 Ed25519)
   verifies over the text, and its key hash is the first four bytes of
   SHA-256(NAME || "\\n" || 0x01 || key);
3. each witness given (algorithm 0x01 or 0x04) has a cosignature/v1 over
   "cosignature/v1\\ntime T\\n" || text, T being the big-endian uint64
   after the key hash, with key hash SHA-256(NAME || "\\n" || 0x04 || key);
4. the text is the checkpoint: origin (the log key's name), size and
   base64 root, printed as "origin size root-hex".

Usage: verify_note.py NOTE LOG_VKEY [WITNESS_VKEY ...]   (exit 0: all good)
"""
import base64
import hashlib
import os
import subprocess
import sys
import tempfile

ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")


def parse_vkey(vkey):
    name, hash_hex, key_b64 = vkey.strip().split("+", 2)
    key = base64.b64decode(key_b64, validate=True)
    if len(hash_hex) != 8 or key[0] not in (0x01, 0x04) or len(key) != 33:
        raise ValueError("not an Ed25519 verifier key: %s" % vkey)
    return name, int(hash_hex, 16), key[1:]


def key_hash(name, alg, key):
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + key).digest()[:4]


def ed25519_verify(key, msg, sig):
    with tempfile.TemporaryDirectory() as d:
        der = os.path.join(d, "pub.der")
        with open(der, "wb") as f:
            f.write(ED25519_SPKI + key)
        m, s = os.path.join(d, "msg"), os.path.join(d, "sig")
        with open(m, "wb") as f:
            f.write(msg)
        with open(s, "wb") as f:
            f.write(sig)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", der,
                            "-rawin", "-in", m, "-sigfile", s], capture_output=True)
        return r.returncode == 0


def main(path, log_vkey, witness_vkeys):
    raw = open(path, "rb").read()
    i = raw.rfind(b"\n\n")
    if i < 0:
        sys.exit("not a signed note: no blank line")
    text, sigs = raw[: i + 1], raw[i + 2:]
    found = {}
    for line in sigs.decode("utf-8").splitlines():
        if not line.startswith("\u2014 "):
            sys.exit("not a signature line: %r" % line)
        name, b64 = line[2:].split(" ")
        found.setdefault(name, []).append(base64.b64decode(b64, validate=True))

    name, _, key = parse_vkey(log_vkey)
    want = key_hash(name, 0x01, key)
    if not any(s[:4] == want and ed25519_verify(key, text, s[4:]) for s in found.get(name, [])):
        sys.exit("the log's signature by %s does not verify" % name)
    for w in witness_vkeys:
        wname, _, wkey = parse_vkey(w)
        want = key_hash(wname, 0x04, wkey)
        ok = False
        for s in found.get(wname, []):
            if s[:4] != want or len(s) != 4 + 8 + 64:
                continue
            t = int.from_bytes(s[4:12], "big")
            if ed25519_verify(wkey, b"cosignature/v1\ntime %d\n" % t + text, s[12:]):
                ok = True
        if not ok:
            sys.exit("no cosignature/v1 of witness %s verifies" % wname)

    lines = text.decode("utf-8").split("\n")
    if len(lines) != 4 or lines[3] != "":
        sys.exit("the checkpoint has %d lines, want origin, size, root" % (len(lines) - 1))
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    if origin != name or len(root) != 32 or str(size) != lines[1]:
        sys.exit("checkpoint text %r is not origin %s, size, 32-byte root" % (text, name))
    print(origin, size, root.hex())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
