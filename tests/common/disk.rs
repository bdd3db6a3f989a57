//! The data directory behind the server's back: reading and rewriting the
//! log's lines, forging and re-signing record lines by the documented format,
//! and listing segment files. Use it (with `TestServer::restart_after`) for
//! tamper, recovery and rotation tests that look at or change the files.

use std::path::Path;

/// The bytes of a log file up to its first zero byte: a running server's
/// `audit.log` ends with zeros written ahead of its last record
/// (docs/log-format.md), which a reader drops.
pub(crate) fn log_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    if let Some(zero) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(zero);
    }
    bytes
}

/// The lines of a log file, without their newlines (up to its first zero
/// byte, see [`log_bytes`]).
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    String::from_utf8(log_bytes(path))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Rewrites the log file at `path` as someone with write access to the data
/// directory would: `edit` changes its lines (without newlines), and the file
/// is rewritten in place with what is left, each line ending in a newline.
pub(crate) fn tamper(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines = read_lines(path);
    edit(&mut lines);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// `line` with the first `from` replaced by `to`; panics when `from` is not
/// there, so an edit that misses cannot pass unnoticed.
pub(crate) fn edit_line(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{from:?} is not in {line}");
    line.replacen(from, to, 1)
}

/// A string field of a record line, e.g. `"signature"` or `"prev"`.
pub(crate) fn field(line: &str, name: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value[name].as_str().unwrap().to_owned()
}

/// The trailing `,"signature":"` of a record line, before its 64 hex digits.
const SIG_HEAD: &str = ",\"signature\":\"";

/// The bytes a record's signature covers, by the documented rule: the line
/// with `,"signature":"<64 hex>"` removed.
pub(crate) fn unsigned_part(line: &str) -> String {
    let suffix_len = SIG_HEAD.len() + 64 + "\"}".len();
    let cut = line.len() - suffix_len;
    assert_eq!(&line[cut..cut + SIG_HEAD.len()], SIG_HEAD, "{line}");
    format!("{}}}", &line[..cut])
}

/// HMAC-SHA256 of `data` under `key`, as 64 lowercase hex characters.
pub(crate) fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The record line whose signature covers `unsigned` and is `signature`.
pub(crate) fn signed(unsigned: &str, signature: &str) -> String {
    let body = unsigned.strip_suffix('}').unwrap();
    format!("{body}{SIG_HEAD}{signature}\"}}")
}

/// `line` with its signature replaced by `signature`.
pub(crate) fn with_signature(line: &str, signature: &str) -> String {
    signed(&unsigned_part(line), signature)
}

/// `line` signed anew with `key`, as someone holding the key would.
pub(crate) fn resign(line: &str, key: &[u8]) -> String {
    let unsigned = unsigned_part(line);
    signed(&unsigned, &hmac_hex(key, unsigned.as_bytes()))
}

/// A record line the server could have written: `seq` at `timestamp`,
/// chained to `prev`, signed with `key` as key `k1`.
pub(crate) fn record_line(seq: u64, timestamp: &str, prev: &str, key: &[u8]) -> String {
    let unsigned = format!(
        concat!(
            r#"{{"seq":{seq},"id":"00000000-0000-7000-8000-{seq:012}","timestamp":"{ts}","#,
            r#""event_type":"crm_update","actor":"system","lead_id":"LEAD-X","#,
            r#""workflow":null,"details":{{"fields":["stage"]}},"key_id":"k1","prev":"{prev}"}}"#
        ),
        seq = seq,
        ts = timestamp,
        prev = prev,
    );
    signed(&unsigned, &hmac_hex(key, unsigned.as_bytes()))
}

/// The names of the files in `dir`, sorted.
pub(crate) fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Sealed segments not compressed yet: `audit.*.log` other than `audit.log`.
pub(crate) fn plain_sealed(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.starts_with("audit.") && n.ends_with(".log") && n != "audit.log")
        .collect()
}

/// Copies the directory `from` to `to`, which must not exist: a data
/// directory kept as it was, to start a server on later.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
