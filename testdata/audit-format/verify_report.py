#!/usr/bin/env python3
"""An outsider's check of a child's access report, written from
docs/auditing.md and docs/audit-format.md alone, with python3 and the
openssl command (no trustgate code or binary):

1. the report's checkpoint (a compact JWS, ES256 or EdDSA) verifies with
   the key its header names in the Trust's copy of the gateway's JWKS,
   and its payload gives the report's size and root;
2. every entry's stored bytes are the JCS form of the entry as shown
   (without "hash"), its leaf hash SHA-256(0x00 || bytes) is its hash and
   its proof's leaf, and its RFC 9162 inclusion proof leads to the root;
3. the entries link: each one's prev_subject is the next one's seq.

Usage: verify_report.py REPORT.json JWKS.json   (exit 0: all good)
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verify_leaves import jcs  # noqa: E402


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes([len(b)]) + b


def pem(der):
    body = base64.encodebytes(der).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + body + "-----END PUBLIC KEY-----\n"


def verify_jws(compact, jwks, work):
    h64, p64, s64 = compact.split(".")
    header = json.loads(b64url(h64))
    if header.get("typ") != "trustgate-checkpoint+json":
        raise SystemExit("checkpoint typ is %r" % header.get("typ"))
    key = next((k for k in jwks["keys"] if k.get("kid") == header["kid"]), None)
    if key is None:
        raise SystemExit("checkpoint signed by %s, which is not in the JWKS" % header["kid"])
    signed = os.path.join(work, "signed")
    with open(signed, "wb") as f:
        f.write((h64 + "." + p64).encode())
    sig = b64url(s64)
    keyfile, sigfile = os.path.join(work, "key.pem"), os.path.join(work, "sig")
    if header["alg"] == "ES256" and key["kty"] == "EC" and key["crv"] == "P-256":
        spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" + b64url(key["x"]) + b64url(key["y"])
        r, s = der_int(sig[:32]), der_int(sig[32:])
        with open(sigfile, "wb") as f:
            f.write(b"\x30" + bytes([len(r) + len(s)]) + r + s)
        cmd = ["openssl", "dgst", "-sha256", "-verify", keyfile, "-signature", sigfile, signed]
    elif header["alg"] == "EdDSA" and key["kty"] == "OKP" and key["crv"] == "Ed25519":
        spki = bytes.fromhex("302a300506032b6570032100") + b64url(key["x"])
        with open(sigfile, "wb") as f:
            f.write(sig)
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keyfile, "-rawin", "-in", signed, "-sigfile", sigfile]
    else:
        raise SystemExit("algorithm %s with key type %s is not one of ES256, EdDSA" % (header["alg"], key["kty"]))
    with open(keyfile, "w") as f:
        f.write(pem(spki))
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        raise SystemExit("the checkpoint's signature does not verify with key %s" % header["kid"])
    return json.loads(b64url(p64)), header["kid"]


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def root_from_inclusion(index, size, leaf, path):
    # RFC 9162 section 2.1.3.2.
    if index >= size:
        raise ValueError("index beyond size")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def main(report_path, jwks_path):
    with open(report_path, encoding="utf-8") as f:
        rep = json.load(f)
    rep = rep.get("report", rep)
    with open(jwks_path, encoding="utf-8") as f:
        jwks = json.load(f)
    with tempfile.TemporaryDirectory() as work:
        cp, kid = verify_jws(rep["checkpoint"], jwks, work)
    if cp["size"] != rep["size"] or cp["root"] != rep["root"]:
        raise SystemExit("the report's size/root are not the checkpoint's")
    root = bytes.fromhex(cp["root"])
    entries = rep["entries"]
    for i, re in enumerate(entries):
        e = dict(re["entry"])
        shown = e.pop("hash")
        if "stored" not in re:
            raise SystemExit("entry %s: no stored bytes (the family's copy cannot be recomputed)" % e["seq"])
        stored = base64.b64decode(re["stored"], validate=True)
        if jcs(e).encode("utf-8") != stored:
            raise SystemExit("entry %s: the stored bytes are not the entry as shown" % e["seq"])
        leaf = hashlib.sha256(b"\x00" + stored).digest()
        pr = re["proof"]
        if leaf.hex() != shown or pr["leaf_hash"] != shown or pr["leaf_index"] != e["seq"] - 1 or pr["size"] != cp["size"]:
            raise SystemExit("entry %s: leaf hash or proof does not match the entry" % e["seq"])
        got = root_from_inclusion(pr["leaf_index"], pr["size"], leaf, [bytes.fromhex(h) for h in pr["hashes"]])
        if got != root:
            raise SystemExit("entry %s: the inclusion proof does not lead to the checkpoint's root" % e["seq"])
        want_prev = entries[i + 1]["entry"]["seq"] if i + 1 < len(entries) else 0
        if e.get("prev_subject", 0) != want_prev:
            raise SystemExit("entry %s: prev_subject %s, the next listed is %s (a gap)" % (e["seq"], e.get("prev_subject", 0), want_prev))
    print("checkpoint size %d signed by %s: signature OK" % (cp["size"], kid))
    print("%d entries: stored bytes, leaf hashes and inclusion proofs OK, linked with no gap" % len(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
