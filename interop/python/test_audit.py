"""Interop: Mandate's audit log checked by implementations Mandate did not write.

A demo server (`mandate init --demo` + `mandate serve`) does some work through the CLI (alice ->
planner -> coder delegation, an `agent create`, a refused delegation); then the export made by
`mandate audit export --format jsonl` is checked from the outside:

- leaves: each event's canonical JSON is recomputed in Python and appended to a pymerkle tree
  (RFC 6962/9162 hashing, checked first on the RFC 6962 reference vector); pymerkle's root at every
  checkpoint size must equal the signed root;
- signatures: every checkpoint is a C2SP signed note, opened here from the spec with
  `cryptography`'s Ed25519 and the verifier keys of the export header; the issuer's JWKS key must
  be one of those note keys;
- inclusion: `mandate audit proof ID` must give pymerkle's audit path and must verify with
  pymerkle and with an RFC 9162 §2.1.3.2 verifier written here; a flipped byte must not;
- consistency: pymerkle's consistency proofs between consecutive checkpoints verify against the
  two signed roots;
- tamper: one character changed in an exported event makes `mandate audit verify --file` fail at
  that position; the untouched export passes with the same key.

The `mandate` binary is only run (server, CLI); no Mandate code is imported. The server helpers
are test_interop.py's own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import pymerkle
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from test_interop import CLI_TIMEOUT, GITHUB, Server, b64url_decode, run_server, unique_name

CHECKPOINT_WAIT = 15  # seconds; the server signs a checkpoint within ~1 s of new events
EM_DASH = "\u2014"
ALICE_SCOPE = "github:pulls.write github:contents.read"
CODER_SCOPE = "github:pulls.write"
PLANNER_REASON = "plan the PR"
# Non-ASCII (BMP and beyond) and a quote: the leaf bytes are UTF-8 canonical JSON, not \u escapes.
CODER_REASON = 'write the code for "café" \u2713 \U0001F680'
CODER_CHAIN = ["user:alice", "agent:planner", "agent:coder"]


# --------------------------------------------------------------------------------------------
# Pure-Python pieces written from the specs
# --------------------------------------------------------------------------------------------


def canonical(event: dict) -> bytes:
    """An event's leaf bytes: sorted keys, no whitespace, UTF-8 (JCS for Mandate's events)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc9162_verify_inclusion(index: int, size: int, leaf: bytes, path: List[bytes],
                             root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


@dataclass(frozen=True)
class NoteKey:
    name: str
    key_id: bytes
    public: bytes  # raw 32-byte Ed25519 key


def parse_verifier_key(vkey: str) -> NoteKey:
    """`name+hexid+base64(0x01 || pubkey)` (C2SP signed-note; Go's sumdb/note)."""
    name, hexid, b64 = vkey.split("+", 2)  # the name has no '+'; the base64 may
    raw = base64.b64decode(b64, validate=True)
    assert len(raw) == 33 and raw[0] == 0x01, f"{vkey}: not an Ed25519 (0x01) verifier key"
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert hexid == key_id.hex(), f"{vkey}: key id {hexid} != SHA-256(name\\n 0x01 key)[:4] {key_id.hex()}"
    return NoteKey(name, key_id, raw[1:])


def open_note(note: str, keys: List[NoteKey]) -> Tuple[str, List[NoteKey]]:
    """Verifies a signed note; returns its text and the keys whose signatures verified.

    Every signature line must be from a known key and verify (stricter than the spec, which lets
    a verifier skip unknown signers: here all signers are expected to be in the header)."""
    assert note.endswith("\n"), f"note does not end with a newline: {note!r}"
    split = note.rfind("\n\n")
    assert split >= 0, f"note has no blank line before its signatures: {note!r}"
    text, sig_block = note[: split + 1], note[split + 2:]
    by_id = {(k.name, k.key_id): k for k in keys}
    signers = []
    for line in sig_block[:-1].split("\n"):
        prefix = EM_DASH + " "
        assert line.startswith(prefix), f"signature line {line!r} does not start with an em dash"
        name, b64 = line[len(prefix):].split(" ")
        blob = base64.b64decode(b64, validate=True)
        assert len(blob) == 4 + 64, f"signature {line!r} is not key id + Ed25519 signature"
        key = by_id.get((name, blob[:4]))
        assert key is not None, f"signature {line!r} is by no key of {[k.name for k in keys]}"
        Ed25519PublicKey.from_public_bytes(key.public).verify(blob[4:], text.encode())
        signers.append(key)
    assert signers, f"note has no signatures: {note!r}"
    return text, signers


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_checkpoint(text: str) -> Checkpoint:
    """C2SP tlog-checkpoint body: origin, decimal size, base64 root hash (then extensions)."""
    lines = text.split("\n")
    assert len(lines) >= 4 and lines[-1] == "", f"not a checkpoint body: {text!r}"
    assert re.fullmatch(r"0|[1-9][0-9]*", lines[1]), f"bad checkpoint size line {lines[1]!r}"
    root = base64.b64decode(lines[2], validate=True)
    assert len(root) == 32, f"root {lines[2]!r} is not 32 bytes"
    return Checkpoint(lines[0], int(lines[1]), root)


def inclusion_proof_object(index: int, size: int, leaf: bytes,
                           path: List[bytes]) -> pymerkle.InclusionProof:
    """A pymerkle proof object holding an RFC 9162 audit path (pymerkle: 1-based index, leaf first)."""
    rule, _ = pymerkle.core._inclusion_path_layout(index + 1, size)
    return pymerkle.InclusionProof("sha256", True, size, index + 1, rule, [leaf, *path])


# --------------------------------------------------------------------------------------------
# The server, the work it records, and its export
# --------------------------------------------------------------------------------------------


class DemoServer(Server):
    """test_interop's Server, initialised with the demo fleet (alice, planner, coder)."""

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if args and args[0] == "init":
            args = (*args, "--demo")
        return super().run_cli(*args, check=check)

    def run_bytes(self, *args: str) -> bytes:
        proc = subprocess.run([str(self.binary), *args], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=CLI_TIMEOUT)
        if proc.returncode != 0:
            pytest.fail(f"`mandate {' '.join(args)}` exited {proc.returncode}\n"
                        f"stderr: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def wait_checkpointed(self) -> dict:
        """`mandate --json audit verify` until every event is in a signed checkpoint."""
        deadline = time.monotonic() + CHECKPOINT_WAIT
        while True:
            verdict = self.cli_json("--json", "audit", "verify")
            assert verdict.get("ok") is True, f"audit verify failed on the live log: {verdict}"
            if verdict.get("unchecked_tail") == 0:
                return verdict
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint covering the log after {CHECKPOINT_WAIT}s: {verdict}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server():
    # Named `server` so that conftest.py attaches this server's log to failures.
    yield from run_server(DemoServer, "mandate-audit-interop-")


@dataclass
class Export:
    path: Path
    lines: List[str]
    header: dict
    events: List[dict]  # the export's event lines: {"type","index","id","event"}
    checkpoints: List[dict]  # {"type","size","note"}
    keys: List[NoteKey]
    tree: pymerkle.InmemoryTree
    verdict: dict  # `mandate --json audit verify` once the whole log was checkpointed

    def event(self, pred) -> dict:
        found = [e for e in self.events if pred(e["event"])]
        assert len(found) == 1, f"expected one matching event, found {len(found)}"
        return found[0]


@pytest.fixture(scope="module")
def audit(server: DemoServer) -> Export:
    t1 = server.run_cli("delegate", "--as", "user:alice", "--to", "planner", "--aud", GITHUB,
                        "--scope", ALICE_SCOPE, "--reason", PLANNER_REASON).stdout.strip()
    # A checkpoint between the two delegations, so that there are consecutive ones to compare.
    server.wait_checkpointed()
    server.run_cli("delegate", "--as", "planner", "--to", "coder", "--subject-token", t1,
                   "--scope", CODER_SCOPE, "--reason", CODER_REASON)
    server.run_cli("agent", "create", unique_name("audited"), "--scopes", "github:*",
                   "--audiences", GITHUB, "--json")
    refused = server.run_cli("delegate", "--as", "planner", "--to", "coder", "--subject-token", t1,
                             "--scope", "github:admin", check=False)
    assert refused.returncode != 0, "escalating delegation was not refused"
    verdict = server.wait_checkpointed()

    raw = server.run_bytes("audit", "export", "--format", "jsonl")
    path = server.home / "audit-export.jsonl"
    path.write_bytes(raw)
    lines = raw.decode("utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]
    header = parsed[0]
    assert header.get("type") == "header", f"first export line is not a header: {lines[0]}"
    events = [p for p in parsed if p["type"] == "event"]
    checkpoints = [p for p in parsed if p["type"] == "checkpoint"]
    assert len(events) + len(checkpoints) + 1 == len(parsed), "unknown line types in the export"

    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for e in events:
        tree.append_entry(canonical(e["event"]))
    keys = [parse_verifier_key(k) for k in header["verifier_keys"]]
    return Export(path, lines, header, events, checkpoints, keys, tree, verdict)


def note_of(exp: Export, note: str) -> Checkpoint:
    text, _ = open_note(note, exp.keys)
    return parse_checkpoint(text)


# --------------------------------------------------------------------------------------------
# pymerkle itself, on the RFC 6962 reference vector
# --------------------------------------------------------------------------------------------

RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                  "606162636465666768696a6b6c6d6e6f"]
RFC6962_ROOTS = {  # size -> root, as in certificate-transparency's merkle tree tests
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def test_pymerkle_hashes_as_rfc6962_on_the_reference_vector():
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for leaf in RFC6962_LEAVES:
        tree.append_entry(bytes.fromhex(leaf))
    for size, root in RFC6962_ROOTS.items():
        assert tree.get_root(size).hex() == root, f"pymerkle root at size {size}"
    assert tree.get_root(0) == hashlib.sha256(b"").digest()  # RFC 6962 empty tree
    assert tree.get_leaf(1) == leaf_hash(b"")
    # The hand-written RFC 9162 verifier agrees with pymerkle's paths on every (index, size).
    for size in range(1, 9):
        root = tree.get_root(size)
        for index in range(size):
            proof = tree.prove_inclusion(index + 1, size)
            assert proof.path[0] == tree.get_leaf(index + 1)
            assert rfc9162_verify_inclusion(index, size, proof.path[0], proof.path[1:], root)


# --------------------------------------------------------------------------------------------
# The export: leaves, roots, signatures
# --------------------------------------------------------------------------------------------


def test_export_holds_the_work_contiguously(audit: Export):
    assert audit.header["format"] == "mandate-audit-export/1", audit.header
    assert audit.header["verifier_keys"], f"export header has no verifier keys: {audit.header}"
    assert [e["index"] for e in audit.events] == list(range(len(audit.events)))
    for e in audit.events:
        assert e["id"] == e["event"]["id"], e
    assert len(audit.events) == audit.verdict["events"], (len(audit.events), audit.verdict)

    coder = audit.event(lambda ev: ev["kind"] == "token.exchanged" and ev.get("chain") == CODER_CHAIN)
    assert coder["event"]["principal"] == "agent:planner"
    assert coder["event"]["details"]["reason"] == CODER_REASON
    # The leaf holds the reason as UTF-8 with JSON escapes only for the quotes, not \u escapes.
    assert json.dumps(CODER_REASON, ensure_ascii=False).encode() in canonical(coder["event"])
    planner = audit.event(lambda ev: ev["kind"] == "token.exchanged" and ev.get("chain") == CODER_CHAIN[:2])
    assert planner["event"]["details"]["reason"] == PLANNER_REASON
    refused = audit.event(lambda ev: ev["kind"] == "token.refused")
    assert refused["event"]["result"] == "refused" and refused["event"]["error"] == "invalid_scope"
    assert any(e["event"]["kind"] == "admin.change" and str(e["event"].get("resource", "")).startswith("agent:audited-")
               for e in audit.events), "agent create was not recorded"


def test_python_leaves_in_pymerkle_give_every_signed_root(audit: Export):
    assert len(audit.checkpoints) >= 3, f"expected several checkpoints: {audit.checkpoints}"
    sizes = [c["size"] for c in audit.checkpoints]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert sizes[-1] == len(audit.events), "the last checkpoint does not cover the whole export"
    naive = pymerkle.InmemoryTree(algorithm="sha256", disable_optimizations=True)
    for e in audit.events:
        naive.append_entry(canonical(e["event"]))
    for c in audit.checkpoints:
        cp = note_of(audit, c["note"])
        assert cp.size == c["size"], (cp, c)
        assert cp.origin == audit.header["origin"], (cp, audit.header)
        ours = audit.tree.get_root(cp.size)
        assert ours == naive.get_root(cp.size), f"pymerkle optimised/naive disagree at {cp.size}"
        assert ours == cp.root, (
            f"checkpoint {cp.size}: pymerkle root over Python's canonical JSON {ours.hex()} "
            f"!= signed root {cp.root.hex()}")
    assert audit.tree.get_root().hex() == audit.verdict["root"], audit.verdict


def test_every_checkpoint_note_verifies_with_cryptography_ed25519(audit: Export):
    origin = audit.header["origin"]
    for key in audit.keys:
        assert key.name == origin, f"note key {key.name} is not named after the origin {origin}"
    for c in audit.checkpoints:
        text, signers = open_note(c["note"], audit.keys)
        assert [k.name for k in signers] == [origin]
        # The signature covers the text exactly: any change to it must fail.
        forged = c["note"].replace(f"\n{c['size']}\n", f"\n{c['size'] + 1}\n", 1)
        assert forged != c["note"]
        with pytest.raises(InvalidSignature):
            open_note(forged, audit.keys)


def test_issuer_jwks_key_is_a_checkpoint_note_key(server: DemoServer, audit: Export):
    jwks = server.jwks()
    issuer_keys = {b64url_decode(k["x"]) for k in jwks["keys"] if k.get("crv") == "Ed25519"}
    assert issuer_keys, f"no Ed25519 keys in the JWKS: {jwks}"
    note_keys = {k.public for k in audit.keys}
    assert issuer_keys & note_keys, (
        f"no JWKS key is a checkpoint note key: jwks {sorted(k.hex() for k in issuer_keys)}, "
        f"notes {sorted(k.hex() for k in note_keys)}")
    # The key that signed the newest checkpoint is the issuer's published one.
    _, signers = open_note(audit.checkpoints[-1]["note"], audit.keys)
    assert all(s.public in issuer_keys for s in signers)


# --------------------------------------------------------------------------------------------
# Inclusion proofs from `mandate audit proof`
# --------------------------------------------------------------------------------------------

PROOF_TARGETS = {
    "coder-exchange": lambda ev: ev["kind"] == "token.exchanged" and ev.get("chain") == CODER_CHAIN,
    "refused": lambda ev: ev["kind"] == "token.refused",
    "first": lambda ev: ev.get("action") == "installation.init",
}


def check_inclusion(server: DemoServer, audit: Export, entry: dict,
                    tree_size: Optional[int] = None) -> dict:
    args = ["audit", "proof", entry["id"]]
    if tree_size is not None:
        args += ["--tree-size", str(tree_size)]
    proof = json.loads(server.run_bytes(*args).decode("utf-8"))
    index, size = proof["index"], proof["tree_size"]
    assert index == entry["index"], (proof["index"], entry)
    assert tree_size is None or size == tree_size
    assert proof["event"] == entry["event"], "the proof's event differs from the export's"
    assert proof["verifier_keys"] == audit.header["verifier_keys"]

    leaf = leaf_hash(canonical(proof["event"]))
    assert proof["leaf_hash"] == leaf.hex(), "Mandate's leaf hash != SHA-256(0x00 || canonical JSON)"
    assert audit.tree.get_leaf(index + 1) == leaf

    cp = parse_checkpoint(open_note(proof["checkpoint"], audit.keys)[0])
    assert cp.size == size and cp.root == audit.tree.get_root(size), (cp, size)

    path = [bytes.fromhex(h) for h in proof["inclusion_proof"]]
    ref = audit.tree.prove_inclusion(index + 1, size)
    assert ref.path[0] == leaf
    assert [p.hex() for p in path] == [p.hex() for p in ref.path[1:]], (
        f"event {index} in tree {size}: Mandate's path != pymerkle's")
    pymerkle.verify_inclusion(leaf, cp.root, inclusion_proof_object(index, size, leaf, path),
                              index=index + 1, size=size)
    assert rfc9162_verify_inclusion(index, size, leaf, path, cp.root)
    return {"index": index, "size": size, "leaf": leaf, "path": path, "root": cp.root}


@pytest.mark.parametrize("target", sorted(PROOF_TARGETS))
def test_mandate_inclusion_proof_is_pymerkles_and_verifies(server, audit, target):
    check_inclusion(server, audit, audit.event(PROOF_TARGETS[target]))


def test_inclusion_proof_against_the_newest_checkpoint(server, audit):
    size = audit.checkpoints[-1]["size"]
    for entry in (audit.events[0], audit.events[len(audit.events) // 2], audit.events[-1]):
        check_inclusion(server, audit, entry, tree_size=size)


def test_tampered_inclusion_proof_fails(server, audit):
    p = check_inclusion(server, audit, audit.event(PROOF_TARGETS["coder-exchange"]))
    index, size, leaf, root = p["index"], p["size"], p["leaf"], p["root"]
    assert p["path"], "a proof for a tree of more than one leaf has hashes"
    for i in range(len(p["path"])):
        bad = list(p["path"])
        bad[i] = bad[i][:7] + bytes([bad[i][7] ^ 0x01]) + bad[i][8:]
        assert not rfc9162_verify_inclusion(index, size, leaf, bad, root), f"flipped hash {i} passed"
        with pytest.raises(pymerkle.InvalidProof):
            pymerkle.verify_inclusion(leaf, root, inclusion_proof_object(index, size, leaf, bad),
                                      index=index + 1, size=size)
    flipped_leaf = bytes([leaf[0] ^ 0x80]) + leaf[1:]
    assert not rfc9162_verify_inclusion(index, size, flipped_leaf, p["path"], root)
    assert not rfc9162_verify_inclusion(index + 1, size, leaf, p["path"], root)
    assert not rfc9162_verify_inclusion(index, size, leaf, p["path"][:-1], root)


# --------------------------------------------------------------------------------------------
# Consistency between checkpoints
# --------------------------------------------------------------------------------------------


def test_consecutive_checkpoints_are_consistent_per_pymerkle(audit: Export):
    cps = [note_of(audit, c["note"]) for c in audit.checkpoints]
    pairs = [(a, b) for a, b in zip(cps, cps[1:]) if a.size > 0]
    assert pairs, f"no two non-empty consecutive checkpoints: {[c.size for c in cps]}"
    for old, new in pairs:
        assert old.root == audit.tree.get_root(old.size) and new.root == audit.tree.get_root(new.size)
        proof = audit.tree.prove_consistency(old.size, new.size)
        pymerkle.verify_consistency(old.root, new.root, proof,
                                    prior_size=old.size, later_size=new.size)
        if old.size < new.size:
            with pytest.raises(pymerkle.InvalidProof):  # the roots swapped must not verify
                pymerkle.verify_consistency(new.root, old.root, proof,
                                            prior_size=old.size, later_size=new.size)


# --------------------------------------------------------------------------------------------
# `mandate audit verify --file` on an edited export
# --------------------------------------------------------------------------------------------


def verify_file(server: DemoServer, path: Path, key: str) -> Tuple[int, dict]:
    proc = server.run_cli("--json", "audit", "verify", "--file", str(path), "--key", key, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"audit verify --file printed no JSON (exit {proc.returncode}): "
                    f"{proc.stdout!r} {proc.stderr!r}")


def test_untouched_export_verifies_with_the_header_key(server, audit):
    for key in audit.header["verifier_keys"]:
        rc, out = verify_file(server, audit.path, key)
        assert rc == 0 and out["ok"] is True, out
        assert out["events"] == len(audit.events) and out["unchecked_tail"] == 0, out
        assert out["last_checkpoint"]["root"] == audit.tree.get_root().hex(), out


TAMPERS = {
    # (which event, the exact text in its line, its replacement: one character changed)
    "reason": (PROOF_TARGETS["coder-exchange"], '"reason":"write the code', '"reason":"write the cade'),
    "principal": (PROOF_TARGETS["refused"], '"principal":"agent:planner"', '"principal":"agent:plannex"'),
}


@pytest.mark.parametrize("what", sorted(TAMPERS))
def test_export_with_one_character_changed_fails_at_that_index(server, audit, what, tmp_path):
    pred, old, new = TAMPERS[what]
    entry = audit.event(pred)
    line_no = 1 + next(i for i, e in enumerate(audit.lines[1:]) if json.loads(e).get("id") == entry["id"])
    assert audit.lines[line_no].count(old) == 1, (old, audit.lines[line_no])
    lines = list(audit.lines)
    lines[line_no] = lines[line_no].replace(old, new)
    copy = tmp_path / f"tampered-{what}.jsonl"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")

    key = audit.header["verifier_keys"][0]
    rc, out = verify_file(server, copy, key)
    assert rc != 0 and out["ok"] is False, f"edited export ({what}) passed: {out}"
    index = entry["index"]
    named = re.search(r"positions? (\d+)(?:\.\.(\d+))?", out["message"])
    assert named, f"the failure names no position: {out}"
    lo, hi = int(named.group(1)), int(named.group(2) or named.group(1))
    assert lo <= index <= hi and out["position"] == lo, (
        f"edited event {index}, but verify reports {out['message']!r} (position {out['position']})")
    # Sanity: the edit indeed changes the recomputed leaf, so pymerkle's roots would not match.
    edited = json.loads(lines[line_no])["event"]
    assert leaf_hash(canonical(edited)) != audit.tree.get_leaf(index + 1)

    rc, out = verify_file(server, audit.path, key)
    assert rc == 0 and out["ok"] is True, f"the untouched export fails next to the edited one: {out}"
