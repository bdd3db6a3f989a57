//! `auditlog bundle export` and `auditlog bundle verify`: self-verifying
//! bundles (docs/bundle-format.md). Export asks the server for the
//! selection's records, a fresh signed checkpoint that covers them, and each
//! record's stored line and inclusion proof at that checkpoint's size, and
//! writes them with the verifier key into one JSON file. Verify checks such
//! a file offline with `auditlog_proof::bundle`: no server, no HMAC key.

use std::path::PathBuf;
use std::time::Duration;

use auditlog_client::proof::{Bundle, BundleRecord, Hash, VerifierKey};
use auditlog_client::{Client, Query};
use clap::{Args, Subcommand};
use futures::StreamExt as _;

use crate::CliError;
use crate::cli::RangeArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Write a lead's history, a time range or a data subject's events with
    /// a signed checkpoint and an inclusion proof per record, to check
    /// offline with `auditlog bundle verify`.
    #[command(
        after_help = "Examples:\n  auditlog bundle export --lead LEAD-001 --output lead.bundle.json\n  auditlog bundle export --since 2026-11-01 --until 2026-11-08 --output week.bundle.json\n  auditlog bundle export --subject jane@example.com --output jane.bundle.json"
    )]
    Export(ExportArgs),
    /// Check a bundle offline: the checkpoint's signature with --key, every
    /// record's line against its proof, every listed record present; exits
    /// 1 naming each record that fails.
    #[command(
        after_help = "Example:\n  auditlog bundle verify lead.bundle.json --key \"$(cat log.vkey)\""
    )]
    Verify {
        /// The bundle file.
        file: PathBuf,
        /// The log's verifier key, from a channel you trust; without it,
        /// the bundle's own key is used, which proves only that the bundle
        /// is consistent with itself.
        #[arg(long, env = "AUDITLOG_VERIFIER_KEY", value_name = "VERIFIER_KEY")]
        key: Option<String>,
    },
    /// Check a witness's mirror (`checkpoint watch --mirror`) offline: its
    /// records are exactly those a signed checkpoint (the witness's kept
    /// note) commits to; exits 1 when they are not.
    #[command(
        after_help = "Example:\n  auditlog bundle verify-mirror log.jsonl --note kept.note --key \"$(cat log.vkey)\""
    )]
    VerifyMirror {
        /// The mirror file (JSON Lines, the records as stored).
        file: PathBuf,
        /// A signed checkpoint note, such as the witness's `--state` file.
        #[arg(long, value_name = "FILE")]
        note: PathBuf,
        /// The log's verifier key, from a channel you trust.
        #[arg(long, env = "AUDITLOG_VERIFIER_KEY", value_name = "VERIFIER_KEY")]
        key: String,
    },
}

/// `bundle verify-mirror`: the note checked with `key`, then the mirror
/// against it, with no server.
pub(crate) fn verify_mirror(
    file: &std::path::Path,
    note: &std::path::Path,
    key: &str,
    json: bool,
) -> Result<(), CliError> {
    let key = VerifierKey::parse(key).map_err(|e| CliError::Usage(format!("--key: {e}")))?;
    let text = std::fs::read_to_string(note)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", note.display())))?;
    let checkpoint = key
        .open_checkpoint(&crate::proofs::kept_note(&text))
        .map_err(|e| CliError::Failed(format!("{}: {e}", note.display())))?;
    crate::witness::mirror::check_offline(file, &checkpoint, json)
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").required(true).multiple(true).args(["lead", "subject", "since", "until", "last"])))]
pub(crate) struct ExportArgs {
    /// A lead's whole history.
    #[arg(
        long,
        conflicts_with_all = ["subject", "since", "until", "last"],
        value_parser = crate::cli::filter_value
    )]
    lead: Option<String>,
    /// Every event about a data subject (auditor).
    #[arg(long, conflicts_with_all = ["since", "until", "last"])]
    subject: Option<String>,
    #[command(flatten)]
    range: RangeArgs,
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
}

pub(crate) async fn export(client: &Client, args: ExportArgs, json: bool) -> Result<(), CliError> {
    let (selection, seqs) = selected(client, &args).await?;
    let last = seqs.last().copied().unwrap_or(0);
    // The tree follows the log a moment behind: ask again until a fresh
    // checkpoint covers the last record selected.
    let mut tries = 0;
    let (note, verifier_key, checkpoint) = loop {
        let response = client.checkpoint(true).await?;
        let note = response.checkpoint.map(|c| c.note).unwrap_or_default();
        let key = VerifierKey::parse(&response.verifier_key)
            .map_err(|e| CliError::Failed(format!("the server's verifier key: {e}")))?;
        let checkpoint = key
            .open_checkpoint(&note)
            .map_err(|e| CliError::Failed(format!("the server's checkpoint: {e}")))?;
        if checkpoint.size >= last {
            break (note, response.verifier_key, checkpoint);
        }
        tries += 1;
        if tries == 50 {
            return Err(CliError::Failed(format!(
                "no signed checkpoint covers seq {last} yet (the latest holds {}): try again",
                checkpoint.size
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut records = Vec::with_capacity(seqs.len());
    for &seq in &seqs {
        let proof = client.inclusion_proof(seq, checkpoint.size).await?;
        if proof.line.is_empty() {
            return Err(CliError::Failed(format!(
                "seq {seq} was purged by retention: its line cannot be bundled"
            )));
        }
        let line = String::from_utf8(proof.line)
            .map_err(|_| CliError::Failed(format!("seq {seq}: the stored line is not UTF-8")))?;
        let hash = |h: &[u8]| -> Result<Hash, CliError> {
            h.try_into().map_err(|_| {
                CliError::Failed(format!("seq {seq}: the server sent a hash not of 32 bytes"))
            })
        };
        let leaf = hash(&proof.leaf_hash)?;
        let hashes = proof
            .hashes
            .iter()
            .map(|h| hash(h))
            .collect::<Result<Vec<_>, _>>()?;
        records.push(BundleRecord::new(seq, line, &leaf, &hashes));
    }
    let bundle = Bundle {
        format: auditlog_client::proof::bundle::FORMAT.into(),
        selection,
        verifier_key,
        checkpoint: note,
        seqs: Some(seqs),
        records,
    };
    // The bundle must check out before it is handed on.
    let report = bundle
        .own_key()
        .and_then(|k| bundle.verify(&k))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if let Some(p) = report.problems.first() {
        return Err(CliError::Failed(format!("the server's proof fails: {p}")));
    }
    let text = serde_json::to_vec_pretty(&bundle)
        .map_err(|e| CliError::Failed(format!("cannot encode the bundle: {e}")))?;
    write_whole(&args.output, &text)?;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "output": args.output.display().to_string(),
                "records": bundle.records.len(),
                "tree_size": checkpoint.size,
                "selection": bundle.selection,
            })
        );
    } else {
        say!(
            "wrote {} record(s) of {} ({}) with their proofs against the signed checkpoint of \
             tree size {} to {}",
            bundle.records.len(),
            checkpoint.origin,
            bundle.selection,
            checkpoint.size,
            args.output.display()
        );
    }
    Ok(())
}

/// The selection's description and the seqs the server returned for it.
async fn selected(client: &Client, args: &ExportArgs) -> Result<(String, Vec<u64>), CliError> {
    let mut seqs: Vec<u64> = if let Some(lead) = &args.lead {
        client
            .lead_history(lead)
            .await?
            .iter()
            .map(|e| e.seq)
            .collect()
    } else if let Some(subject) = &args.subject {
        let mut stream = client.export_subject(subject).await?;
        let mut seqs = Vec::new();
        while let Some(item) = stream.next().await {
            if let Some(event) = item?.event {
                seqs.push(event.seq);
            }
        }
        seqs
    } else {
        let (since, until) = args.range.times()?;
        let mut q = Query::new().oldest_first();
        if let Some(t) = since {
            q = q.since(t);
        }
        if let Some(t) = until {
            q = q.until(t);
        }
        client.query_all(q).await?.iter().map(|e| e.seq).collect()
    };
    seqs.sort_unstable();
    seqs.dedup();
    let selection = match (&args.lead, &args.subject) {
        (Some(lead), _) => format!("lead {lead}"),
        (_, Some(subject)) => format!("subject {subject}"),
        _ => {
            let (since, until) = args.range.times()?;
            let at = |t: Option<std::time::SystemTime>| {
                t.map_or("open".to_owned(), |t| {
                    humantime::format_rfc3339(t).to_string()
                })
            };
            format!("time range {} to {}", at(since), at(until))
        }
    };
    Ok((selection, seqs))
}

pub(crate) fn verify(
    file: &std::path::Path,
    key: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let text = std::fs::read(file)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", file.display())))?;
    let fail = |e: String| CliError::Failed(format!("{}: {e}", file.display()));
    let bundle = Bundle::parse(&text).map_err(|e| fail(e.to_string()))?;
    let given = key.is_some();
    let key = match key {
        Some(k) => VerifierKey::parse(k).map_err(|e| CliError::Usage(format!("--key: {e}")))?,
        None => {
            eprintln!(
                "warning: checked with the key inside the bundle, which proves only that the \
                 bundle is consistent with itself: pass --key with the log's verifier key \
                 obtained out of band"
            );
            bundle.own_key().map_err(|e| fail(e.to_string()))?
        }
    };
    let report = bundle.verify(&key).map_err(|e| fail(e.to_string()))?;
    if let Some(first) = report.problems.first() {
        let more = match report.problems.len() - 1 {
            0 => String::new(),
            n => {
                let rest: Vec<String> =
                    report.problems[1..].iter().map(|p| p.to_string()).collect();
                format!(" (and {n} more: {})", rest.join("; "))
            }
        };
        return Err(fail(format!("FAILED: {first}{more}")));
    }
    let c = &report.checkpoint;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "verified": true,
                "records": report.verified,
                "listed": report.listed,
                "origin": c.origin,
                "tree_size": c.size,
                "key_given": given,
            })
        );
    } else {
        let complete = match report.listed {
            Some(n) => format!("; all {n} seqs the export listed are present"),
            None => "; the bundle makes no completeness claim".to_owned(),
        };
        say!(
            "OK: {} record(s) of {} ({}) proved against the signed checkpoint of tree size \
             {}{complete}",
            report.verified,
            c.origin,
            crate::format::printable(&bundle.selection, false),
            c.size
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` whole: a temp file beside it, synced, renamed.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| CliError::Io(format!("cannot write {}: {e}", path.display()));
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let temp = path.with_file_name(name);
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}
