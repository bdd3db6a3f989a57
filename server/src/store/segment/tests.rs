use std::io::Read;

use flate2::Compression;

use super::members::read_chunk;
use super::*;
use crate::keys::Keyring;
use crate::store::record::{GENESIS, NewEvent, chained_lines};

fn write_plain(path: &Path, n: u64) -> Vec<Vec<u8>> {
    let event = |seq: u64| {
        let mut details = serde_json::Map::new();
        details.insert("n".into(), seq.into());
        NewEvent {
            event_type: if seq.is_multiple_of(5) {
                "error"
            } else {
                "email_sent"
            }
            .into(),
            actor: "a".into(),
            caller: None,
            lead_id: Some(format!("L{}", seq % 7).into()),
            workflow: seq.is_multiple_of(2).then(|| "sales".into()),
            details: details.into(),
            idempotency_key: (seq == 3).then(|| "key3".into()),
        }
    };
    let lines = chained_lines(n, &Keyring::new("k1", vec![3; 32]), event);
    std::fs::write(path, lines.concat()).unwrap();
    lines
}

/// `n` records written plain and compressed in a temp dir.
struct Fixture {
    /// Holds the files: bind it, or they are gone.
    dir: tempfile::TempDir,
    gz: std::path::PathBuf,
    idx: std::path::PathBuf,
    lines: Vec<Vec<u8>>,
    info: SealedInfo,
    index: SegmentIndex,
}

fn compressed(n: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (plain, gz, idx) = (
        dir.path().join("s.log"),
        dir.path().join("s.log.gz"),
        dir.path().join("s.idx"),
    );
    let lines = write_plain(&plain, n);
    let Compressed {
        info,
        index,
        staged,
        ..
    } = compress(&plain, &gz, &idx, &AtomicBool::new(false), Vec::new()).unwrap();
    durable::publish(staged).unwrap();
    Fixture {
        dir,
        gz,
        idx,
        lines,
        info,
        index,
    }
}

#[test]
fn compressed_segment_keeps_every_byte_and_indexes_every_record() {
    let Fixture {
        dir: _dir,
        gz,
        idx,
        lines,
        info,
        index,
    } = compressed(500);
    assert!(index.chunks.len() > 1, "expected several gzip members");
    assert_eq!((info.first_seq, info.last_seq, info.events), (1, 500, 500));
    assert_eq!(info.first_prev, GENESIS);
    assert_eq!(info.event_types["error"], 100);
    assert_eq!(info.event_types["email_sent"], 400);
    assert_eq!(info.event_types.len(), 2);
    assert_eq!(info.workflows["sales"], 250);
    assert_eq!(info.workflows.len(), 1);
    assert_eq!(info.leads, 7);
    assert_eq!(info.sha256, sha256_file(&gz).unwrap());

    // The whole file decompresses (as zcat would) to the original bytes.
    let mut all = Vec::new();
    flate2::read::MultiGzDecoder::new(File::open(&gz).unwrap())
        .read_to_end(&mut all)
        .unwrap();
    assert_eq!(all, lines.concat());
    // Compressed, not stored: these lines (a third of each is random hex)
    // deflate to well under two thirds of their size.
    let plain_len = all.len() as u64;
    let gz_len = std::fs::metadata(&gz).unwrap().len();
    assert!(
        gz_len * 3 < plain_len * 2,
        "{gz_len} compressed bytes for {plain_len} plain ones"
    );

    // Each row points at its line; the idx round-trips.
    let decoded = SegmentIndex::decode(&std::fs::read(&idx).unwrap()).unwrap();
    assert_eq!(decoded, index);
    let file = File::open(&gz).unwrap();
    for row in [&index.rows[0], &index.rows[250], &index.rows[499]] {
        let chunk = read_chunk(&file, &index.chunks[row.chunk as usize]).unwrap();
        let line = &chunk[row.offset as usize..(row.offset + row.len) as usize];
        assert_eq!(line, lines[(row.seq - 1) as usize].as_slice());
    }
    assert_eq!(index.opt(index.rows[2].idempotency_key), Some("key3"));
}

/// The sealer hands each segment's buffer back for the next: nothing of a
/// larger segment read before is left in a smaller one's gzip, index or
/// bytes.
#[test]
fn a_buffer_handed_back_holds_nothing_of_the_segment_before() {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let run = |n: u64, tag: &str, buf: Vec<u8>| {
        let plain = dir.path().join(format!("{tag}.log"));
        let lines = write_plain(&plain, n);
        let gz = dir.path().join(format!("{tag}.log.gz"));
        let idx = dir.path().join(format!("{tag}.idx"));
        let c = compress(&plain, &gz, &idx, &stop, buf).unwrap();
        durable::publish(c.staged).unwrap();
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, lines.concat(), "{tag}");
        assert_eq!(c.index.rows.len() as u64, n, "{tag}");
        assert_eq!(c.info.events, n, "{tag}");
        assert_eq!(c.plain.as_deref(), Some(all.as_slice()), "{tag}");
        c.plain.unwrap()
    };
    let big = run(500, "big", Vec::new());
    let capacity = big.capacity();
    let small = run(40, "small", big);
    // The same memory, not a new allocation.
    assert_eq!(small.capacity(), capacity);
}

/// Read in slabs of any size, a segment compresses to the same bytes, index
/// and facts as read whole, a torn last line included; the plain bytes are
/// handed on only when read whole, and then are the file's (with the torn
/// line's newline), and the lead copy built from them is the one built by
/// reading the file.
#[test]
fn slabs_of_any_size_compress_alike_and_feed_the_same_lead_copy() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("s.log");
    let lines = write_plain(&plain, 300);
    let mut bytes = lines.concat();
    // A torn tail: half a line without its newline.
    bytes.extend_from_slice(&lines[0][..40]);
    std::fs::write(&plain, &bytes).unwrap();
    let stop = AtomicBool::new(false);
    let run = |slab: usize, tag: &str| {
        let (gz, idx) = (
            dir.path().join(format!("{tag}.gz")),
            dir.path().join(format!("{tag}.idx")),
        );
        let c = compress_in_slabs(&plain, &gz, &idx, &stop, slab, Vec::new()).unwrap();
        durable::publish(c.staged).unwrap();
        (std::fs::read(&gz).unwrap(), c.index, c.info, c.plain)
    };
    let (gz, index, info, whole) = run(WHOLE_MAX, "whole");
    let mut with_newline = bytes.clone();
    with_newline.push(b'\n');
    assert_eq!(whole.as_deref(), Some(with_newline.as_slice()));
    assert_eq!(info.events, 300);
    for slab in [
        1,
        100,
        4096,
        8 * 1024 + 1,
        50_000,
        bytes.len(),
        bytes.len() + 1,
    ] {
        let (g, i, f, p) = run(slab, &format!("slab{slab}"));
        assert!(g == gz, "slab {slab}: other gzip bytes");
        assert_eq!(i, index, "slab {slab}");
        assert_eq!(f.sha256, info.sha256, "slab {slab}");
        assert_eq!((f.events, f.last_seq), (info.events, info.last_seq));
        // Whole only when one slab held the file.
        assert_eq!(p.is_some(), slab > bytes.len(), "slab {slab}");
    }
    let copy = |source: crate::store::leads::Source<'_>, tag: &str| {
        let (zst, idx) = (
            dir.path().join(format!("{tag}.zst")),
            dir.path().join(format!("{tag}.lidx")),
        );
        durable::publish(crate::store::leads::write(source, &index, &zst, &idx, &stop).unwrap())
            .unwrap();
        (std::fs::read(zst).unwrap(), std::fs::read(idx).unwrap())
    };
    let whole = whole.unwrap();
    let from_memory = copy(crate::store::leads::Source::Bytes(&whole), "mem");
    assert!(from_memory == copy(crate::store::leads::Source::File(&plain), "file"));
    // Bytes that stop short of the index's rows are an error, not a copy.
    let zst = dir.path().join("short.zst");
    let short = crate::store::leads::write(
        crate::store::leads::Source::Bytes(&whole[..whole.len() / 2]),
        &index,
        &zst,
        &dir.path().join("short.lidx"),
        &stop,
    );
    assert!(short.is_err());
}

/// Every row read through a prefix just long enough for it, through the
/// whole member, and through a member another gzip writer made (with a
/// file name in its header) gives the line; a flipped byte is an error.
#[test]
fn chunks_read_whole_or_in_part_and_damage_is_an_error() {
    let Fixture {
        dir,
        gz,
        lines,
        index,
        ..
    } = compressed(300);
    let file = File::open(&gz).unwrap();
    for row in &index.rows {
        let chunk = &index.chunks[row.chunk as usize];
        let end = (row.offset + row.len) as usize;
        let part = read_chunk_prefix(&file, chunk, end).unwrap();
        assert!(part.len() >= end);
        assert_eq!(
            &part[row.offset as usize..end],
            lines[(row.seq - 1) as usize].as_slice()
        );
        let whole = read_chunk(&file, chunk).unwrap();
        assert_eq!(whole.len(), chunk.plain as usize);
        assert_eq!(&whole[..end], &part[..end]);
    }

    // A member with a file name in its header (as `gzip` writes one).
    let member_plain = lines[..5].concat();
    let mut enc = flate2::GzBuilder::new()
        .filename("x.log")
        .write(Vec::new(), Compression::default());
    enc.write_all(&member_plain).unwrap();
    let foreign = enc.finish().unwrap();
    let path = dir.path().join("foreign.gz");
    std::fs::write(&path, &foreign).unwrap();
    let foreign_chunk = Chunk {
        offset: 0,
        compressed: foreign.len() as u32,
        plain: member_plain.len() as u32,
    };
    let f = File::open(&path).unwrap();
    assert_eq!(read_chunk(&f, &foreign_chunk).unwrap(), member_plain);
    assert_eq!(
        &read_chunk_prefix(&f, &foreign_chunk, 10).unwrap()[..10],
        &member_plain[..10]
    );

    // A flipped byte in the deflate data or the CRC is an error, never
    // wrong bytes or a panic.
    let mut bytes = std::fs::read(&gz).unwrap();
    let first = index.chunks[0];
    let last_byte = (first.offset + u64::from(first.compressed) - 5) as usize;
    bytes[last_byte] ^= 0x40;
    std::fs::write(&gz, &bytes).unwrap();
    let file = File::open(&gz).unwrap();
    assert!(read_chunk(&file, &first).is_err());
    // The index claiming more bytes than the member holds.
    let longer = Chunk {
        plain: index.chunks[1].plain + 1,
        ..index.chunks[1]
    };
    assert!(read_chunk(&file, &longer).is_err());
    assert!(read_chunk_prefix(&file, &longer, longer.plain as usize - 1).is_ok());
}

/// The member reader gives what `zcat` gives, whatever the read sizes,
/// also across members with header fields; a cut or a bad CRC is an
/// error, never short or wrong data.
#[test]
fn members_read_like_zcat_and_refuse_damage() {
    let Fixture {
        dir: _dir,
        gz,
        lines,
        ..
    } = compressed(400);
    let mut bytes = std::fs::read(&gz).unwrap();
    // A member from another writer, with a name and a comment.
    let mut enc = flate2::GzBuilder::new()
        .filename("x.log")
        .comment("c")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), Compression::default());
    enc.write_all(b"{\"more\":1}\n").unwrap();
    bytes.extend(enc.finish().unwrap());
    let mut expected = lines.concat();
    expected.extend_from_slice(b"{\"more\":1}\n");

    for step in [1usize, 7, 4096, 1 << 20] {
        let mut r = Members::new(bytes.as_slice());
        let mut got = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, expected, "read {step} at a time");
    }

    for cut in [1, 9, 30, bytes.len() / 2, bytes.len() - 1] {
        let mut out = Vec::new();
        let r = Members::new(&bytes[..cut]).read_to_end(&mut out);
        assert!(r.is_err(), "cut at {cut} read as whole");
    }
    let mut bad_crc = std::fs::read(&gz).unwrap();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 1;
    let mut out = Vec::new();
    assert!(
        Members::new(bad_crc.as_slice())
            .read_to_end(&mut out)
            .is_err()
    );
    let mut out = Vec::new();
    assert!(
        Members::new(&b"not gzip at all"[..])
            .read_to_end(&mut out)
            .is_err()
    );
}

/// SHA-256 of a file, as hex.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Inflated whole by the chunk table, a segment reads as `zcat` reads it;
/// a table that does not describe the file (a member moved, a length
/// changed, bytes after the last member, a flipped byte) is an error.
#[test]
fn members_inflated_by_their_table_read_like_zcat_or_fail() {
    let Fixture {
        dir: _dir,
        gz,
        lines,
        index,
        ..
    } = compressed(400);
    let bytes = std::fs::read(&gz).unwrap();
    let chunks = &index.chunks;
    let inflate = |bytes: &[u8], chunks: &[Chunk]| {
        let mut out = Vec::new();
        Inflated::new(bytes, chunks)
            .read_to_end(&mut out)
            .map(|_| out)
    };
    assert_eq!(inflate(&bytes, chunks).unwrap(), lines.concat());
    // Line by line, as verification reads it.
    let mut reader = Inflated::new(bytes.as_slice(), chunks);
    let mut line = Vec::new();
    for want in &lines {
        line.clear();
        std::io::BufRead::read_until(&mut reader, b'\n', &mut line).unwrap();
        assert_eq!(&line, want);
    }

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(inflate(&trailing, chunks).is_err());
    let mut flipped = bytes.clone();
    flipped[chunks[1].offset as usize + 20] ^= 0x08;
    assert!(inflate(&flipped, chunks).is_err());
    let shorter: Vec<Chunk> = chunks[..chunks.len() - 1].to_vec();
    assert!(inflate(&bytes, &shorter).is_err());
    let mut moved = chunks.clone();
    moved[1].offset += 1;
    assert!(inflate(&bytes, &moved).is_err());
    let mut longer = chunks.clone();
    longer[0].plain += 1;
    assert!(inflate(&bytes, &longer).is_err());
    let mut shorter_plain = chunks.clone();
    shorter_plain[0].plain -= 1;
    assert!(inflate(&bytes, &shorter_plain).is_err());
}
