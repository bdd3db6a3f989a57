//! Rule 5: the zeros the writer keeps ahead of the live file's end, told
//! apart from zeros that damaged records the log had acknowledged.

use std::fs::File;
use std::io::BufRead;
use std::os::unix::fs::FileExt as _;

use crate::keys::Keyring;
use crate::store::record::{MacCheck, Record};

/// What of a cut tail is quarantined: the zeros written ahead are space,
/// not content, so each piece between them becomes a line of its own (a
/// crash can leave writes past a stretch of zeros), and every piece ends
/// with a newline.
pub(super) fn without_zeros(cut: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cut.len());
    for piece in cut.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        out.extend_from_slice(piece);
        if piece.last() != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// Where the last acknowledged record past `from` ends: the end of the
/// furthest line after `from` in `file` that is a record with a valid MAC
/// and a seq at most `acknowledged` (the head file's), or `from` when there
/// is none. A crash leaves zeros only where the last sync had not reached,
/// so zeros before such a record are damage to the log, not its end.
pub(super) fn acknowledged_end(
    file: &File,
    from: u64,
    acknowledged: u64,
    keyring: &Keyring,
) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if acknowledged == 0 || len <= from {
        return Ok(from);
    }
    let mut rest = vec![0u8; usize::try_from(len - from).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut rest, from)?;
    let mut end = from;
    let mut at = 0usize;
    for piece in rest.split_inclusive(|&b| b == b'\n' || b == 0) {
        let start = at;
        at += piece.len();
        let Some((&b'\n', body)) = piece.split_last() else {
            continue;
        };
        // A piece that began after a zero: the record starts at its first
        // byte that is not one.
        let body = &body[body.iter().take_while(|&&b| b == 0).count()..];
        if let Ok(record) = Record::parse(body)
            && record.seq <= acknowledged
            && record.check_mac(body, keyring) == MacCheck::Valid
        {
            end = from + (start + piece.len()) as u64;
        }
    }
    Ok(end)
}

/// Reads the log's next piece into `line`, returning its length: up to and
/// including a newline, like `read_until`; with `split_zeros`, a run of
/// zeros is a piece of its own, and a zero ends the piece before it, so the
/// records after damage read as lines again.
pub(super) fn next_piece(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    split_zeros: bool,
) -> std::io::Result<usize> {
    if !split_zeros {
        return reader.read_until(b'\n', line);
    }
    let mut n = 0;
    loop {
        let buf = reader.fill_buf()?;
        let Some(&first) = buf.first() else {
            return Ok(n);
        };
        let zeros = n == 0 && first == 0 || line.first() == Some(&0);
        let take = if zeros {
            buf.iter().take_while(|&&b| b == 0).count()
        } else {
            buf.iter()
                .position(|&b| b == 0 || b == b'\n')
                .map_or(buf.len(), |i| if buf[i] == b'\n' { i + 1 } else { i })
        };
        line.extend_from_slice(&buf[..take]);
        let done = take < buf.len() || line.last() == Some(&b'\n');
        reader.consume(take);
        n += take;
        if done {
            return Ok(n);
        }
    }
}
