//! The fuzz targets' inputs replayed on stable: every file under
//! `fuzz/regressions/<target>/` (inputs that once crashed a target, kept
//! after the fix) and `fuzz/seeds/<target>/` goes through the same entry
//! point the target calls (`auditlog_server::fuzzing`), which asserts the
//! target's properties. A missing directory fails: a target must not go
//! silently untested.
//!
//! `AUDITLOG_WRITE_SEEDS=1 cargo test --test suite fuzz_regressions::` rewrites the
//! seeds from `fuzzing::seeds()` (after a change of the record format, say).

use std::path::{Path, PathBuf};

use auditlog_server::fuzzing;

const TARGETS: [&str; 12] = [
    "record",
    "verify",
    "recovery",
    "manifest",
    "lead_index",
    "page_token",
    "validation",
    "merkle",
    "note",
    "bundle",
    "mirror",
    "apply",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; fails if the directory is
/// missing.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): every target has one", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        // `.gitkeep` holds an empty directory in git; it is no input.
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on `data` the way its fuzz target does.
fn run(target: &str, data: &[u8]) {
    match target {
        "record" => fuzzing::record(data),
        "verify" => fuzzing::verify(data),
        "recovery" => {
            let dir = tempfile::tempdir().expect("temporary directory");
            fuzzing::recovery(dir.path(), data);
        }
        "manifest" => fuzzing::manifest(data),
        "lead_index" => fuzzing::lead_index(data),
        "page_token" => fuzzing::page_token(data),
        "validation" => fuzzing::validation(data),
        "merkle" => fuzzing::merkle(data),
        "note" => fuzzing::note(data),
        "bundle" => fuzzing::bundle(data),
        "mirror" => fuzzing::mirror(data),
        "apply" => {
            let dir = tempfile::tempdir().expect("temporary directory");
            fuzzing::apply(dir.path(), data);
        }
        other => panic!("no fuzz target {other}"),
    }
}

/// Replays every input of `kind` for every target; reports all failures
/// together, by file.
fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).expect("readable input");
            count += 1;
            if std::panic::catch_unwind(|| run(target, &data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failing inputs: {failures:#?}");
    count
}

#[test]
fn every_regression_input_passes() {
    replay("regressions");
}

#[test]
fn every_seed_passes() {
    assert!(replay("seeds") >= TARGETS.len());
}

#[test]
fn every_target_has_a_seed_or_a_regression() {
    for target in TARGETS {
        let n = inputs("seeds", target).len() + inputs("regressions", target).len();
        assert!(n > 0, "fuzz target {target} has no input to replay");
    }
}

#[test]
fn the_committed_seeds_are_current() {
    let write = std::env::var_os("AUDITLOG_WRITE_SEEDS").is_some();
    for (target, name, bytes) in fuzzing::seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().expect("seed directory")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            same_seed(&committed, &bytes),
            "{} is not what fuzzing::seeds() makes; rerun with AUDITLOG_WRITE_SEEDS=1",
            path.display()
        );
    }
}

/// Equal bytes, or for the compressed-segment seed (a mode byte, then
/// gzip) the same mode and the same bytes once decompressed, whatever the
/// compressor's version made of them.
fn same_seed(committed: &[u8], made: &[u8]) -> bool {
    use std::io::Read as _;
    let gunzip = |b: &[u8]| {
        let (mode, gz) = b.split_first()?;
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut plain)
            .ok()?;
        Some((*mode, plain))
    };
    committed == made || gunzip(committed).is_some_and(|c| Some(c) == gunzip(made))
}

#[test]
fn every_target_is_a_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    assert!(manifest.contains("cargo-fuzz = true"));
    for target in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml lacks the target {target}"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
    }
}
