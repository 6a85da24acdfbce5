// trustgate console: the only script. It checks audit proofs in the
// browser (WebCrypto) and prints. Everything else works without it.
"use strict";
(function () {
  const enc = new TextEncoder();

  function b64urlBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function b64Bytes(s) { return b64urlBytes(s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")); }
  function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""); }
  function unhex(h) {
    if (!/^([0-9a-f]{2})*$/.test(h)) throw new Error("not lowercase hex: " + h);
    const out = new Uint8Array(h.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  }
  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }
  async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
  // RFC 9162 hashes: leaf = H(0x00 || entry), node = H(0x01 || left || right).
  const leafHash = (entry) => sha256(concat(new Uint8Array([0]), entry));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

  // RFC 9162 section 2.1.3.2: verify an inclusion proof.
  async function rootFromProof(index, size, leaf, path) {
    if (index >= size) throw new Error("leaf index " + index + " is beyond the tree size " + size);
    let fn = index, sn = size - 1, r = leaf;
    for (const p of path) {
      if (sn === 0) throw new Error("the proof is longer than the tree is deep");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
    return r;
  }

  let jwksPromise = null;
  function gatewayKeys() {
    if (!jwksPromise) {
      jwksPromise = fetch("/.well-known/jwks.json", { credentials: "omit", cache: "no-store" }).then((r) => {
        if (!r.ok) throw new Error("the gateway's keys could not be fetched (" + r.status + ")");
        return r.json();
      });
    }
    return jwksPromise;
  }

  // verifyCheckpoint checks the compact JWS of a checkpoint with the
  // gateway's published key and returns its header and payload.
  async function verifyCheckpoint(compact) {
    const parts = compact.split(".");
    if (parts.length !== 3) throw new Error("the checkpoint is not a compact JWS");
    const header = JSON.parse(new TextDecoder().decode(b64urlBytes(parts[0])));
    if (header.typ !== "trustgate-checkpoint+json") throw new Error("the checkpoint's typ is " + header.typ);
    const jwks = await gatewayKeys();
    const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
    if (!jwk) throw new Error("the checkpoint is signed with key " + header.kid + ", which the gateway does not publish");
    let key, alg;
    if (header.alg === "ES256" && jwk.kty === "EC" && jwk.crv === "P-256") {
      key = await crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
      alg = { name: "ECDSA", hash: "SHA-256" };
    } else if (header.alg === "EdDSA" && jwk.kty === "OKP" && jwk.crv === "Ed25519") {
      key = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
      alg = { name: "Ed25519" };
    } else {
      throw new Error("the checkpoint's algorithm " + header.alg + " is not ES256 or EdDSA with the key's type");
    }
    const ok = await crypto.subtle.verify(alg, key, b64urlBytes(parts[2]), enc.encode(parts[0] + "." + parts[1]));
    if (!ok) throw new Error("the checkpoint's signature does not verify with the gateway's key " + header.kid);
    const payload = JSON.parse(new TextDecoder().decode(b64urlBytes(parts[1])));
    return { header, payload };
  }

  // checkProof checks one inclusion proof against a verified checkpoint;
  // stored (base64, optional) is the entry's stored bytes.
  async function checkProof(proof, cp, stored) {
    if (proof.size !== cp.payload.size) throw new Error("the proof is for a tree of " + proof.size + " entries, the checkpoint covers " + cp.payload.size);
    if (proof.leaf_index !== proof.seq - 1) throw new Error("entry " + proof.seq + " must be leaf " + (proof.seq - 1));
    let leaf = unhex(proof.leaf_hash);
    let fromEntry = false;
    if (stored) {
      const h = await leafHash(b64Bytes(stored));
      if (hex(h) !== proof.leaf_hash) throw new Error("the entry's stored bytes do not hash to the proof's leaf");
      leaf = h; fromEntry = true;
    }
    const root = await rootFromProof(proof.leaf_index, proof.size, leaf, (proof.hashes || []).map(unhex));
    if (hex(root) !== cp.payload.root) throw new Error("the proof leads to root " + hex(root).slice(0, 12) + "…, not the signed root " + cp.payload.root.slice(0, 12) + "…");
    return fromEntry;
  }

  function say(el, ok, text) {
    el.textContent = "";
    const p = document.createElement("p");
    p.className = ok ? "ok" : "bad";
    p.textContent = (ok ? "✓ " : "✗ ") + text;
    el.appendChild(p);
    el.dataset.verified = ok ? "true" : "false";
  }

  async function single() {
    const out = document.getElementById("proof-result");
    try {
      const data = JSON.parse(document.getElementById("proof-data").textContent);
      const cp = await verifyCheckpoint(data.checkpoint);
      await checkProof(data.proof, cp);
      say(out, true, "Verified in this browser: entry " + data.proof.seq + " is leaf " + data.proof.leaf_index + " of the log of " + cp.payload.size +
        " entries whose root " + cp.payload.root.slice(0, 16) + "… the gateway signed at " + cp.payload.time + " with key " + cp.header.kid + ".");
    } catch (e) {
      say(out, false, "The proof does not check: " + e.message);
    }
  }

  async function report(el) {
    const verdict = document.getElementById("report-verdict");
    const data = JSON.parse(el.textContent);
    let cp;
    try {
      cp = await verifyCheckpoint(data.checkpoint);
    } catch (e) {
      say(verdict, false, "The report's checkpoint does not check: " + e.message);
      return;
    }
    let good = 0, bad = 0;
    for (const item of data.entries || []) {
      const cell = document.querySelector('td.proof[data-seq="' + item.seq + '"]');
      try {
        const fromEntry = await checkProof(item.proof, cp, item.stored);
        good++;
        if (cell) { cell.textContent = fromEntry ? "✓ entry and proof checked" : "✓ proof checked"; cell.className = "proof ok"; }
      } catch (e) {
        bad++;
        if (cell) { cell.textContent = "✗ " + e.message; cell.className = "proof bad"; }
      }
    }
    if (bad === 0) {
      say(verdict, true, "All " + good + " entries shown are in the log: each proof checks in this browser against the checkpoint of " + cp.payload.size +
        " entries the gateway signed at " + cp.payload.time + " with key " + cp.header.kid + ".");
    } else {
      say(verdict, false, bad + " of " + (good + bad) + " proofs do not check. Tell the Trust's auditor.");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const btn = document.getElementById("verify-proof");
    if (btn) btn.addEventListener("click", single);
    const rep = document.getElementById("report-proofs");
    if (rep) report(rep);
    for (const b of document.querySelectorAll("[data-print]")) b.addEventListener("click", () => window.print());
    document.documentElement.dataset.ready = "yes"; // the page's buttons work from now on
  });
})();
