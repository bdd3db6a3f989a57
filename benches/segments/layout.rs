//! What the segments bench's data dir holds (segments, chunks, indexes, lead
//! copies, the chunks a lead's history touches) and the single-threaded cost
//! model measured on its segment files.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditlog_server::bench::{
    Chunk, Keyring, MacCheck, RecordHead, SegmentIndex, answer_line, read_chunk,
};

use crate::output::{mb, rate, us};
use crate::{BoxError, COST_SAMPLE_CHUNKS, KEY_ID};

/// One compressed segment.
pub(crate) struct SegmentFiles {
    gz: PathBuf,
    chunks: Vec<Chunk>,
}

/// What the data dir holds, from the segments' `.idx` files.
pub(crate) struct Layout {
    pub(crate) segments: Vec<SegmentFiles>,
    pub(crate) gz_bytes: u64,
    idx_bytes: u64,
    /// The lead copies (`.leads.zst` and `.leads.idx`).
    copy_bytes: u64,
    pub(crate) plain_bytes: u64,
    records: u64,
    /// Per lead: (events, distinct chunks holding them).
    pub(crate) leads: HashMap<String, (u32, u32)>,
}

impl Layout {
    pub(crate) fn read(dir: &Path) -> Result<Layout, BoxError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.retain(|n| n.ends_with(".log.gz"));
        names.sort();
        let mut layout = Layout {
            segments: Vec::new(),
            gz_bytes: 0,
            idx_bytes: 0,
            copy_bytes: 0,
            plain_bytes: 0,
            records: 0,
            leads: HashMap::new(),
        };
        // Per lead: events, distinct chunks, and the last (segment, chunk).
        let mut shapes: HashMap<String, (u32, u32, (usize, u32))> = HashMap::new();
        for (seg_no, name) in names.iter().enumerate() {
            let gz = dir.join(name);
            let stem = name.strip_suffix(".log.gz").unwrap_or(name);
            let idx_bytes = std::fs::read(dir.join(format!("{stem}.idx")))?;
            let index = SegmentIndex::decode(&idx_bytes)?;
            layout.gz_bytes += std::fs::metadata(&gz)?.len();
            layout.idx_bytes += idx_bytes.len() as u64;
            for copy in [format!("{stem}.leads.zst"), format!("{stem}.leads.idx")] {
                layout.copy_bytes += std::fs::metadata(dir.join(copy)).map_or(0, |m| m.len());
            }
            layout.plain_bytes += index.chunks.iter().map(|c| u64::from(c.plain)).sum::<u64>();
            layout.records += index.rows.len() as u64;
            for row in &index.rows {
                let Some(lead) = index.opt(row.lead) else {
                    continue;
                };
                let at = (seg_no, row.chunk);
                match shapes.get_mut(lead) {
                    Some(shape) => {
                        shape.0 += 1;
                        if shape.2 != at {
                            shape.1 += 1;
                            shape.2 = at;
                        }
                    }
                    None => {
                        shapes.insert(lead.to_owned(), (1, 1, at));
                    }
                }
            }
            layout.segments.push(SegmentFiles {
                gz,
                chunks: index.chunks,
            });
        }
        layout.leads = shapes
            .into_iter()
            .map(|(lead, (events, chunks, _))| (lead, (events, chunks)))
            .collect();
        Ok(layout)
    }

    fn chunks(&self) -> usize {
        self.segments.iter().map(|s| s.chunks.len()).sum()
    }

    pub(crate) fn print(&self, events: u64) {
        println!("Layout");
        println!("------");
        println!(
            "{} compressed segments, {} records in their indexes ({} events written), {} \
             chunks",
            self.segments.len(),
            self.records,
            events,
            self.chunks()
        );
        println!(
            "plain {} ({:.0} bytes/event), compressed {} (ratio {:.2}x), .idx files {} ({:.0} \
             bytes/event)",
            mb(self.plain_bytes),
            self.plain_bytes as f64 / self.records.max(1) as f64,
            mb(self.gz_bytes),
            self.plain_bytes as f64 / self.gz_bytes.max(1) as f64,
            mb(self.idx_bytes),
            self.idx_bytes as f64 / self.records.max(1) as f64,
        );
        println!(
            "lead copies (records grouped by lead, for histories) {} ({:.2}x the compressed \
             segments)",
            mb(self.copy_bytes),
            self.copy_bytes as f64 / self.gz_bytes.max(1) as f64,
        );
        let n = self.leads.len().max(1) as f64;
        let events: f64 = self.leads.values().map(|s| f64::from(s.0)).sum();
        let chunks: f64 = self.leads.values().map(|s| f64::from(s.1)).sum();
        println!(
            "{} leads; a lead's history averages {:.0} events in {:.0} distinct chunks",
            self.leads.len(),
            events / n,
            chunks / n
        );
        println!();
    }
}

/// Per-record costs measured single-threaded on the segment files (page
/// cache warm): what verification and a history query do per chunk and per
/// record.
pub(crate) struct CostModel {
    chunks: usize,
    records: usize,
    plain_bytes: u64,
    gunzip: Duration,
    mac: Duration,
    parse: Duration,
}

impl CostModel {
    pub(crate) fn measure(dir: &Path, layout: &Layout) -> Result<CostModel, BoxError> {
        let keyring = Keyring::load(KEY_ID, None, dir, true)?;
        let total = layout.chunks();
        let stride = (total / COST_SAMPLE_CHUNKS).max(1);
        let mut model = CostModel {
            chunks: 0,
            records: 0,
            plain_bytes: 0,
            gunzip: Duration::ZERO,
            mac: Duration::ZERO,
            parse: Duration::ZERO,
        };
        let mut k = 0usize;
        for seg in &layout.segments {
            let file = File::open(&seg.gz)?;
            for chunk in &seg.chunks {
                k += 1;
                if !k.is_multiple_of(stride) {
                    continue;
                }
                let t = Instant::now();
                let plain = read_chunk(&file, chunk)?;
                model.gunzip += t.elapsed();
                model.chunks += 1;
                model.plain_bytes += plain.len() as u64;
                let lines: Vec<&[u8]> = plain
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                let t = Instant::now();
                for line in &lines {
                    let ok = RecordHead::peek(line)
                        .is_some_and(|h| h.check_mac(line, &keyring) == MacCheck::Valid);
                    if !ok {
                        return Err(
                            format!("a record in {} does not verify", seg.gz.display()).into()
                        );
                    }
                }
                model.mac += t.elapsed();
                let t = Instant::now();
                for line in &lines {
                    answer_line(line).map_err(|e| format!("unparsable record: {e}"))?;
                }
                model.parse += t.elapsed();
                model.records += lines.len();
            }
        }
        Ok(model)
    }

    fn per_chunk(&self, d: Duration) -> Duration {
        d / u32::try_from(self.chunks.max(1)).unwrap_or(u32::MAX)
    }

    fn per_record(&self, d: Duration) -> Duration {
        d / u32::try_from(self.records.max(1)).unwrap_or(u32::MAX)
    }

    pub(crate) fn print(&self) {
        println!("Cost model (single thread, {} chunks sampled)", self.chunks);
        println!("----------");
        let gunzip_secs = self.gunzip.as_secs_f64().max(1e-9);
        println!(
            "gunzip one chunk ({:.0} records, {:.1} KiB plain): {} ({:.0} MB/s plain), {} per \
             record",
            self.records as f64 / self.chunks.max(1) as f64,
            self.plain_bytes as f64 / self.chunks.max(1) as f64 / 1024.0,
            us(self.per_chunk(self.gunzip)),
            self.plain_bytes as f64 / gunzip_secs / 1e6,
            us(self.per_record(self.gunzip)),
        );
        println!(
            "peek + HMAC check: {} per record; decode and encode as answered (queries): {} per record",
            us(self.per_record(self.mac)),
            us(self.per_record(self.parse)),
        );
        let verify_per_record = self.per_record(self.gunzip + self.mac).as_secs_f64();
        println!(
            "verification ceiling (gunzip + MAC, no I/O): {} per thread",
            rate(1.0 / verify_per_record.max(1e-12))
        );
        println!();
    }
}
