//! Reading a plain segment's lines for its lead copy, in lead order.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;

/// The plain segment's lines, read for the copy in lead order.
///
/// Leads are numbered in the order they first appear in the segment
/// (`IndexBuilder`), so each lead's first line comes after the previous
/// lead's first line: a window moving forward through the file serves all of
/// them, and every later line of a lead that falls inside it (a lead whose
/// events are close together), with one read per window instead of one
/// `pread` per line (which was half the cost of writing a copy, 2026-12-03).
/// A line outside the window is read on its own. The order only decides
/// how many reads there are, never what is read.
///
/// Given the whole file's bytes ([`Lines::Whole`]), nothing is read: a
/// lead's lines are spread over the segment, so the window serves only each
/// lead's first line, and every other line took a `pread` of its own (a
/// fifth of the sealer's CPU, 2026-12-05).
pub(super) enum Lines<'a> {
    /// The whole file's bytes: every line is copied from them.
    Whole(&'a [u8]),
    /// The file, read through a window.
    Window {
        file: &'a File,
        window: Vec<u8>,
        /// Where `window` starts in the file.
        at: u64,
    },
}

impl<'a> Lines<'a> {
    /// How much of the file one forward read takes.
    pub(super) const WINDOW: usize = 256 * 1024;

    pub(super) fn new(file: &'a File) -> Lines<'a> {
        Lines::Window {
            file,
            window: Vec::new(),
            at: 0,
        }
    }

    /// Lines served from `bytes`, all of a segment; a line past them is an
    /// error (the index does not fit the bytes).
    pub(super) fn whole(bytes: &'a [u8]) -> Lines<'a> {
        Lines::Whole(bytes)
    }

    /// Appends the `len` bytes at `pos` to `out`. `first`: the line is its
    /// lead's first, so the window may move forward to it.
    pub(super) fn append(
        &mut self,
        pos: u64,
        len: usize,
        first: bool,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (file, window, at) = match self {
            Lines::Whole(bytes) => {
                let line = slice(bytes, 0, pos, len).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "a line at {pos} of {len} bytes is past the segment's {} bytes",
                            bytes.len()
                        ),
                    )
                })?;
                out.extend_from_slice(line);
                return Ok(());
            }
            Lines::Window { file, window, at } => (*file, window, at),
        };
        if let Some(bytes) = slice(window, *at, pos, len) {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        if first && pos >= *at {
            // Read the window from `pos`: `WINDOW` bytes, or `len` if
            // longer, or up to the end of the file.
            let mut reader = file;
            reader.seek(SeekFrom::Start(pos))?;
            window.clear();
            *at = pos;
            reader
                .take(Self::WINDOW.max(len) as u64)
                .read_to_end(window)?;
            if let Some(bytes) = slice(window, *at, pos, len) {
                out.extend_from_slice(bytes);
                return Ok(());
            }
        }
        let end = out.len() + len;
        out.resize(end, 0);
        file.read_exact_at(&mut out[end - len..], pos)
    }
}

/// The `len` bytes at file position `pos` of `bytes`, which start at
/// position `at`, if they hold all of them.
fn slice(bytes: &[u8], at: u64, pos: u64, len: usize) -> Option<&[u8]> {
    let from = usize::try_from(pos.checked_sub(at)?).ok()?;
    bytes.get(from..from.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_exactly_whatever_the_order() {
        use std::io::Write as _;
        // Lines of every length around the window's size, so reads land
        // inside the window, across its end, past it, behind it and past
        // the file's end.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        let mut bytes = Vec::new();
        let mut lines = Vec::new();
        for (i, len) in [100, Lines::WINDOW - 150, 300, Lines::WINDOW + 7, 50, 80]
            .into_iter()
            .enumerate()
        {
            let start = bytes.len() as u64;
            bytes.extend((0..len).map(|j| b'a' + ((i * 7 + j) % 26) as u8));
            lines.push((start, len));
        }
        File::create(&path).unwrap().write_all(&bytes).unwrap();
        let file = File::open(&path).unwrap();
        let line = |k: usize| lines[k];
        let mut reader = Lines::new(&file);
        // (line, first of its lead): firsts move forward with one exception
        // behind the window; later lines jump ahead and back.
        let order = [
            (0, true),
            (2, false),
            (1, true),
            (3, false),
            (2, true),
            (0, true),
            (4, true),
            (5, false),
            (3, true),
            (5, true),
        ];
        let mut out = Vec::new();
        let mut want = Vec::new();
        for (k, first) in order {
            let (pos, len) = line(k);
            reader.append(pos, len, first, &mut out).unwrap();
            want.extend_from_slice(&bytes[pos as usize..pos as usize + len]);
            assert_eq!(out, want, "line {k}");
        }
        // Past the end of the file: an error, not short or made-up bytes.
        let end = bytes.len() as u64;
        let mut out = Vec::new();
        assert!(reader.append(end - 10, 20, true, &mut out).is_err());
        assert!(reader.append(end - 10, 20, false, &mut out).is_err());
    }
}
