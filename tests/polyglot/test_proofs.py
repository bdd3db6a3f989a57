#!/usr/bin/env python3
"""Checks the server's signed checkpoints and Merkle proofs in Python, with
code written from the specifications alone (RFC 6962 / RFC 9162 for the
tree and its proofs, C2SP tlog-checkpoint and signed-note for the note), and
`cryptography` for Ed25519: nothing here comes from the server's code.

Usage:
    test_proofs.py --target 127.0.0.1:PORT --data-dir DIR --verifier-key KEY

KEY is what `auditlog-server --print-verifier-key` printed for the server's
data directory DIR. The test logs a few events, fetches a signed
checkpoint, verifies its signature with KEY, recomputes every leaf hash
from the lines of DIR/audit.log (and from the lines the proofs carry),
recomputes the root (and again from the records as StreamEvents sends them
with `stored_lines`), and checks an inclusion proof for every record and a
consistency proof from an earlier checkpoint. Changed proofs, notes and
keys must all be refused.

With --bundle FILE (written by `auditlog bundle export`), it also checks
that bundle offline with a verifier written from docs/bundle-format.md
alone, and that a changed line, a dropped record and another key are each
refused.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_client  # noqa: E402  (stub generation is shared)


class Refused(Exception):
    pass


# --- RFC 6962 §2.1 ------------------------------------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    """MTH(D[n]) over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = largest_power_of_two_below(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


# --- docs/proofs.md, "Gaps" ------------------------------------------------------

GAP_PREFIX = b"auditlog gap at seq "


def gap_line(seq):
    """The leaf bytes of a seq the log does not hold (when the tree held no
    record's leaf for it)."""
    return GAP_PREFIX + str(seq).encode("ascii")


def is_gap_line(line):
    digits = line[len(GAP_PREFIX):]
    return (
        line.startswith(GAP_PREFIX)
        and digits.isdigit()
        and digits == str(int(digits)).encode("ascii")
    )


# The vector docs/proofs.md gives, computed here from the text alone.
assert leaf_hash(gap_line(4)).hex() == "b6ca8a4815b0f7481a7f3a022b58852b0275860ab9bb443121aba407851c09b2"
assert is_gap_line(gap_line(4)) and not is_gap_line(b"auditlog gap at seq 04")


# --- RFC 9162 §2.1.3.2 and §2.1.4.2 ---------------------------------------------


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        raise Refused("leaf index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Refused("inclusion path too long")
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
    if sn != 0 or r != root:
        raise Refused("inclusion proof does not lead to the root")


def verify_consistency(first, second, first_hash, second_hash, path):
    if first == second:
        if path or first_hash != second_hash:
            raise Refused("equal sizes need an empty proof and equal roots")
        return
    if first == 0 or first > second or not path:
        raise Refused("bad sizes or empty consistency path")
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Refused("consistency path too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_hash or sr != second_hash:
        raise Refused("consistency proof does not match the roots")


# --- C2SP signed-note and tlog-checkpoint ---------------------------------------


def parse_verifier_key(vkey):
    name, key_id, key = vkey.split("+", 2)
    raw = base64.b64decode(key, validate=True)
    if raw[0] != 0x01 or len(raw) != 33:
        raise Refused("not an Ed25519 verifier key")
    want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if want.hex() != key_id:
        raise Refused("key id does not match")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, vkey):
    """The note's text if a signature by vkey verifies."""
    name, key_id, public = parse_verifier_key(vkey)
    split = note.rindex("\n\n")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise Refused("signature block does not end with a newline")
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Refused("bad signature line")
        sig_name, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob, validate=True)
        if sig_name == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise Refused("signature does not verify") from None
            return text
    raise Refused("no signature by the key")


def parse_checkpoint(text):
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or str(size) != lines[1]:
        raise Refused("malformed checkpoint")
    return origin, size, root


# --- docs/bundle-format.md ------------------------------------------------------


def verify_bundle(bundle, vkey):
    """Steps 1 to 5 of docs/bundle-format.md; returns the number of records,
    or raises Refused naming the first record that fails."""
    fields = {"format", "selection", "verifier_key", "checkpoint", "seqs", "records"}
    if set(bundle) - fields or bundle.get("format") != "auditlog-bundle/1":
        raise Refused("not an auditlog-bundle/1")
    origin, size, root = parse_checkpoint(open_note(bundle["checkpoint"], vkey))
    if origin != vkey.split("+")[0]:
        raise Refused("the checkpoint of another log")
    seen = set()
    for record in bundle["records"]:
        seq = record["seq"]
        if seq in seen or not 1 <= seq <= size or record["leaf_index"] != seq - 1:
            raise Refused(f"seq {seq}: twice, beyond the checkpoint or a wrong leaf index")
        seen.add(seq)
        proof = [base64.b64decode(h, validate=True) for h in record["proof"]]
        if any(len(h) != 32 for h in proof):
            raise Refused(f"seq {seq}: a proof hash is not 32 bytes")
        leaf = leaf_hash(record["line"].encode("utf-8"))
        try:
            verify_inclusion(seq - 1, size, leaf, proof, root)
        except Refused:
            if base64.b64encode(leaf).decode() != record["leaf_hash"]:
                raise Refused(f"seq {seq}: the line was changed") from None
            raise Refused(f"seq {seq}: the inclusion proof is wrong") from None
        if is_gap_line(record["line"].encode("utf-8")):
            raise Refused(f"seq {seq}: a gap line, not a record")
    if "seqs" in bundle:
        listed = set(bundle["seqs"])
        if listed != seen:
            raise Refused(f"seqs {sorted(listed ^ seen)}: listed without a record, or not listed")
    return len(seen)


def check_bundle(path, vkey):
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    n = verify_bundle(bundle, vkey)
    assert n > 0, "an empty bundle proves nothing"
    changed = json.loads(json.dumps(bundle))
    changed["records"][0]["line"] = changed["records"][0]["line"].replace('"seq"', '"seq" ', 1)
    assert refused(verify_bundle, changed, vkey)
    dropped = json.loads(json.dumps(bundle))
    dropped["records"].pop()
    assert refused(verify_bundle, dropped, vkey)
    origin = vkey.split("+")[0]
    typed = b"\x01" + Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    other_id = hashlib.sha256(origin.encode() + b"\n" + typed).digest()[:4].hex()
    assert refused(verify_bundle, bundle, origin + "+" + other_id + "+" + base64.b64encode(typed).decode())
    return n


def refused(fn, *args):
    try:
        fn(*args)
    except Refused:
        return True
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--verifier-key", required=True)
    p.add_argument("--bundle", help="a bundle from `auditlog bundle export` to check offline")
    args = p.parse_args()
    vkey = args.verifier_key.strip()
    import grpc

    with tempfile.TemporaryDirectory(prefix="auditlog-pystubs-") as out:
        test_client.generate_stubs(out)
        pb, pb_grpc = test_client.pb, test_client.pb_grpc
        stub = pb_grpc.AuditServiceStub(grpc.insecure_channel(args.target))
        for i in range(5):
            stub.Log(pb.LogRequest(event=pb.EventInput(event_type="proof_probe", lead_id=f"P-{i}")), timeout=10)
        head = stub.GetStats(pb.GetStatsRequest(), timeout=10).head_seq

        def checkpoint_at_least(n):
            deadline = time.monotonic() + 30
            while True:
                resp = stub.GetCheckpoint(pb.GetCheckpointRequest(fresh=True), timeout=10)
                if resp.checkpoint.tree_size >= n:
                    return resp
                if time.monotonic() > deadline:
                    raise SystemExit(f"no checkpoint of {n} records in 30 s: {resp}")
                time.sleep(0.05)

        resp = checkpoint_at_least(head)
        assert resp.verifier_key == vkey, (resp.verifier_key, vkey)
        note = resp.checkpoint.note
        origin, size, root = parse_checkpoint(open_note(note, vkey))
        assert origin == vkey.split("+")[0], origin
        assert (size, root) == (resp.checkpoint.tree_size, resp.checkpoint.root_hash)

        # Refused: a changed note, another key.
        assert refused(open_note, note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1), vkey)
        other_pub = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        typed = b"\x01" + other_pub
        other_id = hashlib.sha256(origin.encode() + b"\n" + typed).digest()[:4].hex()
        other_key = origin + "+" + other_id + "+" + base64.b64encode(typed).decode()
        assert refused(open_note, note, other_key)

        # Leaves from the file, independently of the server.
        # A running server's audit.log ends in zero bytes written ahead of
        # its last record (docs/log-format.md): the log ends at the first.
        with open(os.path.join(args.data_dir, "audit.log"), "rb") as f:
            live = f.read().split(b"\0", 1)[0]
        file_lines = [line for line in live.split(b"\n") if line]
        by_seq = {json.loads(line)["seq"]: line for line in file_lines}
        # A seq the log does not hold has the gap leaf (or the leaf the tree
        # kept, which this file-based check cannot recompute).
        assert max(by_seq) >= size, "audit.log lacks records (rotated?)"
        leaves = [leaf_hash(by_seq.get(s, gap_line(s))) for s in range(1, size + 1)]
        assert mth(leaves) == root, "the root of the file's lines is not the checkpoint's"

        # The same leaves over the network: the records as stored
        # (StreamEvents with stored_lines), as a mirror without the files
        # has them, make the signed root too.
        streamed = []
        for resp in stub.StreamEvents(pb.StreamEventsRequest(from_seq=1, stored_lines=True), timeout=10):
            assert not resp.HasField("event"), "a stored-lines message carries an event"
            assert resp.lines, "a stored-lines message without lines"
            streamed.extend(resp.lines)
        assert [json.loads(line)["seq"] for line in streamed] == list(range(1, len(streamed) + 1))
        assert len(streamed) >= size
        assert streamed == file_lines[: len(streamed)], "the streamed lines are not the file's"
        assert mth([leaf_hash(line) for line in streamed[:size]]) == root, "the streamed lines' root"

        for seq in range(1, size + 1):
            proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(seq=seq, tree_size=size), timeout=10)
            assert proof.line == by_seq.get(seq, gap_line(seq)), f"seq {seq}: the proof's line is not the file's"
            assert proof.leaf_hash == leaves[seq - 1]
            assert proof.leaf_index == seq - 1
            path = list(proof.hashes)
            verify_inclusion(seq - 1, size, leaf_hash(proof.line), path, root)
            if path:
                bad = [bytes([path[0][0] ^ 1]) + path[0][1:]] + path[1:]
                assert refused(verify_inclusion, seq - 1, size, leaves[seq - 1], bad, root)
            other_leaf = leaves[seq % size]
            if other_leaf != leaves[seq - 1]:
                assert refused(verify_inclusion, seq - 1, size, other_leaf, path, root)

        for first in range(1, size + 1):
            proof = stub.GetConsistencyProof(
                pb.GetConsistencyProofRequest(first_size=first, second_size=size), timeout=10
            )
            verify_consistency(first, size, mth(leaves[:first]), root, list(proof.hashes))
            if first < size:
                wrong = mth(leaves[: first - 1]) if first > 1 else b"\x00" * 32
                assert refused(verify_consistency, first, size, wrong, root, list(proof.hashes))

        # Receipts with proofs: LogBatch with with_proof answers with one
        # checkpoint and a proof per event, checked here from the specs.
        batch = stub.LogBatch(
            pb.LogBatchRequest(
                events=[pb.EventInput(event_type="proof_probe", lead_id=f"R-{i}") for i in range(3)],
                with_proof=True,
            ),
            timeout=10,
        )
        assert batch.HasField("proofs"), batch.proof_unavailable
        _, psize, proot = parse_checkpoint(open_note(batch.proofs.checkpoint.note, vkey))
        assert len(batch.proofs.proofs) == len(batch.receipts)
        for receipt, proof in zip(batch.receipts, batch.proofs.proofs):
            record = json.loads(proof.line)
            assert (proof.seq, record["seq"], record["signature"]) == (receipt.seq, receipt.seq, receipt.signature)
            assert receipt.seq <= psize
            verify_inclusion(receipt.seq - 1, psize, leaf_hash(proof.line), list(proof.hashes), proot)
            changed = proof.line.replace(b"R-", b"X-")
            assert refused(verify_inclusion, receipt.seq - 1, psize, leaf_hash(changed), list(proof.hashes), proot)
        print(f"test_proofs: {len(batch.receipts)} receipts with proofs verified in Python")

        try:
            stub.GetInclusionProof(pb.GetInclusionProofRequest(seq=size + 100, tree_size=size), timeout=10)
            raise SystemExit("a seq beyond the tree was proved")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e

    print(f"test_proofs: checkpoint of {size} records and every proof verified in Python")
    if args.bundle:
        n = check_bundle(args.bundle, vkey)
        print(f"test_proofs: a bundle of {n} records verified offline in Python")


if __name__ == "__main__":
    main()
