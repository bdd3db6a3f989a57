//! The targets of the auditor's floor: what a verifier reads from a server
//! or a file it does not trust (`auditlog-proof`: inclusion and consistency
//! proofs, signed checkpoint notes, offline bundles). No panic is not enough
//! there: a verifier that accepts what the log never committed to is the
//! failure that matters, so each target builds the truth first (a tree, a
//! note, a bundle, made honestly), lets the input change what the verifier
//! is shown, and asserts that whatever it accepts is that truth.
//!
//! Nothing here can forge SHA-256 or Ed25519, so what the properties can
//! catch is the verifiers' own reading: an index or size taken wrongly, a
//! proof of the wrong length let through, text outside the signed part
//! returned as signed, a record checked against one thing and reported as
//! another.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use auditlog_proof::{
    Bundle, BundleRecord, Checkpoint, CompactRange, Hash, MemoryTree, NoteSigner, VerifierKey,
    consistency_proof, empty_root, gap_leaf, inclusion_proof, leaf_hash, mirror, note_signers,
    root_of, verify_consistency, verify_inclusion,
};

/// The input read a field at a time; past its end every field reads 0, so
/// every input is a whole case.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    /// A number below `n` (0 for `n == 0`), from two bytes.
    fn below(&mut self, n: u64) -> u64 {
        let v = u64::from(self.byte()) << 8 | u64::from(self.byte());
        v.checked_rem(n).unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, _| v << 8 | u64::from(self.byte()))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The most leaves `merkle` builds: every shape of proof up to a depth of 7.
const MAX_LEAVES: u64 = 130;

/// `merkle`: inclusion and consistency proofs of a tree built from the
/// input, each verified as made and then changed as the input says (another
/// index, another leaf or old root, a hash of the proof flipped, dropped,
/// added, swapped), and arbitrary sizes and indexes up to `u64::MAX`.
///
/// Properties: every proof the tree makes verifies; a changed claim
/// verifies only when it is true (the leaf is at that index of the tree of
/// that size, the old root is the root of the tree of that size); no size
/// or index panics the verifiers.
pub fn merkle(data: &[u8]) {
    let mut input = Input(data);
    let n = 1 + input.below(MAX_LEAVES);
    // Distinct leaves, so a leaf at the wrong index is told apart.
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut tree = MemoryTree::default();
    // The root of every size, one leaf at a time (the compact range's, which
    // the unit tests hold to RFC 6962's `root_of`).
    let mut range = CompactRange::new(0);
    let mut roots = vec![empty_root()];
    for leaf in &leaves {
        tree.push(*leaf);
        range.push(*leaf);
        roots.extend(range.root());
    }
    assert_eq!(
        roots.len() as u64,
        n + 1,
        "a compact range from 0 without a root"
    );
    // What a changed proof may take in: hashes of this tree, so a change
    // is plausible rather than random.
    let any_hashes: Vec<Hash> = roots.iter().chain(&leaves).copied().collect();
    while !input.is_empty() {
        match input.byte() % 3 {
            0 => {
                let size = 1 + input.below(n);
                let index = input.below(size);
                let Ok(Ok(proof)) = inclusion_proof(&tree, index, size) else {
                    panic!("no inclusion proof of {index} in {size}");
                };
                let root = &roots[size as usize];
                let leaf = leaves[index as usize];
                if let Err(e) = verify_inclusion(index, size, &leaf, &proof, root) {
                    panic!("the proof of {index} in {size} made by the tree fails: {e}");
                }
                let (index, leaf, proof) = changed(
                    &mut input,
                    (index, leaf, proof),
                    n + 2,
                    &leaves,
                    &any_hashes,
                );
                if verify_inclusion(index, size, &leaf, &proof, root).is_ok() {
                    assert!(
                        index < size && leaves[index as usize] == leaf,
                        "a leaf that is not at {index} of the tree of {size} proves there"
                    );
                }
            }
            1 => {
                let second = input.below(n + 1);
                let first = input.below(second + 1);
                let Ok(Ok(proof)) = consistency_proof(&tree, first, second) else {
                    panic!("no consistency proof of {first} to {second}");
                };
                let (r1, r2) = (roots[first as usize], roots[second as usize]);
                if let Err(e) = verify_consistency(first, second, &r1, &r2, &proof) {
                    panic!("the proof of {first} to {second} made by the tree fails: {e}");
                }
                let (first, r1, proof) = changed(
                    &mut input,
                    (first, r1, proof),
                    second + 1,
                    &roots[..=second as usize],
                    &any_hashes,
                );
                if verify_consistency(first, second, &r1, &r2, &proof).is_ok() {
                    assert!(
                        first <= second && roots[first as usize] == r1,
                        "a root that is not the tree of {first}'s proves it a prefix of {second}"
                    );
                }
            }
            _ => {
                // Sizes and indexes from anywhere in u64: refused or checked,
                // never a panic or a loop past 64 levels.
                let (a, b) = (input.u64(), input.u64());
                let len = input.below(70) as usize;
                let proof = vec![leaves[0]; len];
                let _ = verify_inclusion(a, b, &leaves[0], &proof, &roots[1]);
                let _ = verify_consistency(a, b, &roots[1], &roots[n as usize], &proof);
                if a == 0 && b > 0 {
                    assert!(
                        verify_consistency(0, b, &empty_root(), &roots[1], &proof).is_ok()
                            == proof.is_empty()
                    );
                }
            }
        }
    }
}

/// One change to a claim (a number, a hash, a proof), as the input says:
/// the number to one below `number_below`, the hash to one of `choices`, or
/// the proof as [`change_proof`] does. An inclusion claim is (index, leaf,
/// proof), a consistency claim (old size, old root, proof).
fn changed(
    input: &mut Input<'_>,
    (mut number, mut hash, mut proof): (u64, Hash, Vec<Hash>),
    number_below: u64,
    choices: &[Hash],
    hashes: &[Hash],
) -> (u64, Hash, Vec<Hash>) {
    match input.byte() % 6 {
        0 => number = input.below(number_below),
        1 => hash = choices[input.below(choices.len() as u64) as usize],
        kind => change_proof(input, kind, &mut proof, hashes),
    }
    (number, hash, proof)
}

/// Changes a proof as the input says, by `kind`: a hash's bit flipped (2),
/// a hash dropped (3), one of `hashes` added (4), two swapped (5).
fn change_proof(input: &mut Input<'_>, kind: u8, proof: &mut Vec<Hash>, hashes: &[Hash]) {
    let len = proof.len() as u64;
    match kind {
        4 => {
            let at = input.below(len + 1) as usize;
            proof.insert(at, hashes[input.below(hashes.len() as u64) as usize]);
        }
        _ if proof.is_empty() => {}
        2 => {
            let at = input.below(len) as usize;
            let bit = input.byte();
            proof[at][usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
        }
        3 => {
            proof.remove(input.below(len) as usize);
        }
        _ => {
            let (a, b) = (input.below(len) as usize, input.below(len) as usize);
            proof.swap(a, b);
        }
    }
}

/// The log these targets sign for, and its key's seed.
const ORIGIN: &str = "fuzz.example/log";
const SEED: [u8; 32] = [7; 32];

fn signer() -> NoteSigner {
    let Ok(signer) = NoteSigner::new(ORIGIN, &SEED) else {
        panic!("the fuzzing key's name is refused");
    };
    signer
}

fn verifier(signer: &NoteSigner) -> VerifierKey {
    let Ok(key) = VerifierKey::parse(&signer.verifier_key()) else {
        panic!("the fuzzing key's verifier key is refused");
    };
    key
}

/// `note`: a checkpoint note signed with the fuzzing key, its size, root and
/// extension lines taken from the input, then edited as the input says
/// (bytes replaced, inserted, removed); and the input itself read as a
/// note, a checkpoint body and a verifier key.
///
/// Properties: an edited note opens only to the text that was signed, and
/// as a checkpoint only to the checkpoint that was signed; a checkpoint
/// body or verifier key that parses is written back byte for byte as it
/// was read (no second spelling of the same checkpoint or key); nothing
/// panics.
pub fn note(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let signer = signer();
    let key = verifier(&signer);
    // The input as anything a verifier reads.
    let _ = note_signers(&text);
    let _ = key.open(&text);
    if let Ok(checkpoint) = Checkpoint::parse(&text) {
        assert!(
            text.starts_with(&checkpoint.body()),
            "a checkpoint body is read as one it does not spell: {text:?}"
        );
    }
    if let Ok(parsed) = VerifierKey::parse(&text) {
        assert_eq!(
            parsed.to_string(),
            text.trim(),
            "a second spelling of a key"
        );
    }

    // A note signed honestly, then edited.
    let mut input = Input(data);
    let mut root = [0u8; 32];
    root.iter_mut().for_each(|b| *b = input.byte());
    let checkpoint = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: input.u64(),
        root,
    };
    let mut body = checkpoint.body();
    for _ in 0..input.below(3) {
        body.push_str(&format!("extension {}\n", input.byte()));
    }
    let signed = signer.sign(&body);
    let mut note = signed.clone().into_bytes();
    for _ in 0..1 + input.below(4) {
        let at = input.below(note.len() as u64 + 1) as usize;
        let b = input.byte();
        match input.byte() % 3 {
            0 if at < note.len() => note[at] = b,
            1 => note.insert(at, b),
            _ if at < note.len() => {
                note.remove(at);
            }
            _ => {}
        }
    }
    let Ok(note) = String::from_utf8(note) else {
        return;
    };
    if let Ok(opened) = key.open(&note) {
        assert_eq!(opened, body, "text that was not signed opens as signed");
    }
    if let Ok(opened) = key.open_checkpoint(&note) {
        assert_eq!(opened, checkpoint, "a checkpoint that was not signed opens");
    }
}

/// The lines of the log `bundle` exports from: a few short records.
fn bundle_lines(n: u64) -> Vec<String> {
    (1..=n)
        .map(|seq| {
            format!("{{\"seq\":{seq},\"event_type\":\"lead_ingested\",\"lead_id\":\"L-{seq}\"}}")
        })
        .collect()
}

/// `bundle`: a bundle exported honestly from a small log (some of its
/// records, each with its proof, the signed checkpoint, the seqs listed),
/// edited as the input says (a record's seq, leaf index, line, leaf hash or
/// proof changed, a record dropped, duplicated or swapped with another, the
/// JSON's bytes edited), then read back and verified with the log's key;
/// and the input itself read as a bundle.
///
/// Properties: the honest bundle verifies clean; whatever an edited bundle
/// holds, every record it reports verified is, seq and line, a record of
/// the log, its checkpoint the one that was signed, and a bundle reported
/// clean that lists the exported seqs holds all of their records; nothing
/// panics.
pub fn bundle(data: &[u8]) {
    let signer = signer();
    let key = verifier(&signer);
    if let Ok(parsed) = Bundle::parse(data) {
        let _ = parsed.own_key();
        let _ = parsed.verify(&key);
    }

    let mut input = Input(data);
    let n = 1 + input.below(9);
    let lines = bundle_lines(n);
    let leaves: Vec<Hash> = lines.iter().map(|l| leaf_hash(l.as_bytes())).collect();
    let mut tree = MemoryTree::default();
    for leaf in &leaves {
        tree.push(*leaf);
    }
    let checkpoint = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: n,
        root: root_of(&leaves),
    };
    let chosen: BTreeSet<u64> = (1..=n).filter(|_| input.byte() % 2 == 0).collect();
    let mut records = Vec::new();
    for &seq in &chosen {
        let Ok(Ok(proof)) = inclusion_proof(&tree, seq - 1, n) else {
            panic!("no inclusion proof of {seq} in {n}");
        };
        let i = seq as usize - 1;
        records.push(BundleRecord::new(seq, lines[i].clone(), &leaves[i], &proof));
    }
    let honest = Bundle {
        format: auditlog_proof::bundle::FORMAT.to_owned(),
        selection: "fuzz".to_owned(),
        verifier_key: signer.verifier_key(),
        checkpoint: signer.sign_checkpoint(&checkpoint),
        seqs: Some(chosen.iter().copied().collect()),
        records,
    };
    match honest.verify(&key) {
        Ok(report) if report.ok() && report.verified == chosen.len() => {}
        other => panic!("an honest bundle does not verify: {other:?}"),
    }

    let mut edited = honest.clone();
    for _ in 0..1 + input.below(3) {
        edit(&mut input, &mut edited, &lines);
    }
    let mut json = serde_json::to_vec(&edited).unwrap_or_default();
    if input.byte() % 4 == 0 && !json.is_empty() {
        let at = input.below(json.len() as u64) as usize;
        json[at] = input.byte();
    }
    let Ok(read) = Bundle::parse(&json) else {
        return;
    };
    let Ok(report) = read.verify(&key) else {
        return;
    };
    assert_eq!(
        report.checkpoint, checkpoint,
        "a checkpoint that was not signed"
    );
    let failed: BTreeSet<u64> = report.problems.iter().map(|p| p.seq).collect();
    for record in &read.records {
        if failed.contains(&record.seq) {
            continue;
        }
        let genuine = record.seq >= 1 && lines.get(record.seq as usize - 1) == Some(&record.line);
        assert!(
            genuine,
            "seq {} verifies with a line the log does not hold there: {:?}",
            record.seq, record.line
        );
    }
    if report.ok() && read.seqs == honest.seqs {
        let held: BTreeSet<u64> = read.records.iter().map(|r| r.seq).collect();
        assert_eq!(held, chosen, "a clean bundle lacks a listed record");
    }
}

/// One edit of a bundle, as the input says.
fn edit(input: &mut Input<'_>, bundle: &mut Bundle, lines: &[String]) {
    let records = &mut bundle.records;
    let pick = |input: &mut Input<'_>, len: usize| input.below(len as u64) as usize;
    if records.is_empty() {
        return;
    }
    let i = pick(input, records.len());
    match input.byte() % 9 {
        0 => records[i].seq = input.below(lines.len() as u64 + 2),
        1 => records[i].leaf_index = input.below(lines.len() as u64 + 2),
        2 => {
            let mut line = std::mem::take(&mut records[i].line).into_bytes();
            let at = pick(input, line.len() + 1);
            line.insert(at, input.byte() % 95 + 32);
            records[i].line = String::from_utf8_lossy(&line).into_owned();
        }
        3 => records[i].line = lines[pick(input, lines.len())].clone(),
        4 => {
            let other = pick(input, lines.len());
            records[i].leaf_hash = STANDARD.encode(leaf_hash(lines[other].as_bytes()));
        }
        5 => {
            let j = pick(input, records.len());
            let proof = records[j].proof.clone();
            records[i].proof = proof;
        }
        6 => {
            records.remove(i);
        }
        7 => {
            let copy = records[i].clone();
            records.push(copy);
        }
        _ => {
            let j = pick(input, records.len());
            let line = records[j].line.clone();
            records[j].line = std::mem::replace(&mut records[i].line, line);
        }
    }
}

/// `mirror`: a witness's mirror of a small log, some of whose seqs were
/// cut (gap leaves in its tree, no line in the mirror), checked offline
/// against a checkpoint of the log after it was edited as the input says
/// (a byte of a line changed, a line dropped, doubled, swapped, a cut
/// seq's line or other bytes put in, the file cut short); and the input
/// itself read as a mirror.
///
/// Properties: the honest mirror verifies, its checked part ending after
/// the checkpoint's last record; an edited mirror verifies only if its
/// checked part is, byte for byte, the log's records up to the
/// checkpoint's size (a cut seq's line not among them); nothing panics.
pub fn mirror(data: &[u8]) {
    let mut input = Input(data);
    let n = 1 + input.below(12);
    let cut: BTreeSet<u64> = (1..=n).filter(|_| input.byte() % 5 == 0).collect();
    let lines = bundle_lines(n);
    let leaves: Vec<Hash> = (1..=n)
        .map(|seq| match cut.contains(&seq) {
            true => gap_leaf(seq),
            false => leaf_hash(lines[seq as usize - 1].as_bytes()),
        })
        .collect();
    let size = input.below(n + 1);
    let checkpoint = Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root: root_of(&leaves[..size as usize]),
    };
    let _ = mirror::verify(data, &checkpoint);

    let held = |upto: u64| -> Vec<u8> {
        (1..=upto)
            .filter(|seq| !cut.contains(seq))
            .flat_map(|seq| format!("{}\n", lines[seq as usize - 1]).into_bytes())
            .collect()
    };
    let honest = held(n);
    let covered = held(size);
    match mirror::verify(&honest[..], &checkpoint) {
        Ok(prefix) => assert_eq!(prefix.len, covered.len() as u64, "the checked part"),
        Err(e) => panic!("an honest mirror does not verify: {e}"),
    }

    let mut file: Vec<Vec<u8>> = honest
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    for _ in 0..1 + input.below(3) {
        edit_mirror(&mut input, &mut file, &lines);
    }
    let mut bytes = file.concat();
    if input.byte() % 4 == 0 {
        bytes.truncate(input.below(bytes.len() as u64 + 1) as usize);
    }
    if let Ok(prefix) = mirror::verify(&bytes[..], &checkpoint) {
        let checked = bytes.get(..prefix.len as usize);
        assert_eq!(
            checked,
            Some(&covered[..]),
            "a mirror verifies whose records up to seq {size} are not the log's"
        );
    }
}

/// One edit of a mirror's lines (each with its newline), as the input says.
fn edit_mirror(input: &mut Input<'_>, file: &mut Vec<Vec<u8>>, lines: &[String]) {
    let pick = |input: &mut Input<'_>, len: usize| input.below(len as u64) as usize;
    let at = pick(input, file.len() + 1);
    match input.byte() % 6 {
        0 if at < file.len() => {
            let line = &mut file[at];
            let i = pick(input, line.len());
            let byte = input.byte();
            // A line put in empty has no byte to change.
            if let Some(b) = line.get_mut(i) {
                *b = byte;
            }
        }
        1 if at < file.len() => {
            file.remove(at);
        }
        2 if at < file.len() => {
            let copy = file[at].clone();
            file.insert(at, copy);
        }
        3 if at < file.len() => {
            let other = pick(input, file.len());
            file.swap(at, other);
        }
        4 => {
            let line = &lines[pick(input, lines.len())];
            file.insert(at, format!("{line}\n").into_bytes());
        }
        _ => {
            let len = pick(input, 16);
            let junk = (0..len).map(|_| input.byte()).collect();
            file.insert(at, junk);
        }
    }
}
