#!/usr/bin/env python3
"""An outsider's check of trustgate audit entries, written from
docs/audit-format.md alone (no trustgate code): for each entry as the API
or the export shows it (one JSON object a line, or {"entry": ...} lines),
recompute the stored bytes (RFC 8785 canonical JSON of the entry without
"hash"), the leaf hash SHA-256(0x00 || bytes), and check that it is the
entry's "hash" and the next entry's "prev_hash".

Usage: verify_leaves.py FILE.jsonl   (exit 0: all good; 1: a mismatch)
"""
import hashlib
import json
import sys


def jcs(v):
    # RFC 8785 for the values an entry holds: strings, integers below
    # 2**53, booleans, arrays and objects (keys sorted by UTF-16 units).
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if abs(v) >= 2**53:
            raise ValueError("integer beyond 2^53")
        return str(v)
    if isinstance(v, str):
        out = ['"']
        for ch in v:
            c = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif c < 0x20:
                out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(c, "\\u%04x" % c))
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in keys) + "}"
    raise ValueError("unexpected value %r" % (v,))


def main(path):
    prev = "0" * 64
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            entry = obj.get("entry", obj)
            shown = entry.pop("hash")
            stored = jcs(entry).encode("utf-8")
            leaf = hashlib.sha256(b"\x00" + stored).hexdigest()
            if leaf != shown:
                print("entry %s: leaf %s, shown hash %s" % (entry.get("seq"), leaf, shown))
                return 1
            if "stored" in obj and obj["stored"].encode("utf-8") != stored:
                print("entry %s: stored bytes differ" % entry.get("seq"))
                return 1
            if entry.get("seq") == 1:
                prev = "0" * 64
            if entry["prev_hash"] != prev:
                print("entry %s: prev_hash %s, previous hash %s" % (entry.get("seq"), entry["prev_hash"], prev))
                return 1
            prev, n = leaf, n + 1
    print("%d leaves recomputed, chain intact" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
