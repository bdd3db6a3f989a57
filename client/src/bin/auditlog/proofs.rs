//! `auditlog checkpoint` and `auditlog proof ...`: the log's signed
//! checkpoint and its proofs, each checked here, on the client, against a
//! verifier key the user trusts (`--key`, `AUDITLOG_VERIFIER_KEY`). Without
//! one, the server's own key is used and the output says that this proves
//! nothing about a server that is not trusted.

use auditlog_client::proof::{Hash, VerifierKey, gap_seq, verify_consistency};
use auditlog_client::{Client, VerifiedCheckpoint};
use clap::{Args, Subcommand};

use crate::CliError;

/// The verifier key flag shared by the commands.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The log's verifier key (NAME+KEYID+KEY), as `auditlog-server
    /// --print-verifier-key` printed it; without it, the key the server
    /// sends is used, which proves nothing about that server.
    #[arg(long, env = "AUDITLOG_VERIFIER_KEY", value_name = "VERIFIER_KEY")]
    key: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CheckpointArgs {
    #[command(subcommand)]
    pub(crate) watch: Option<CheckpointCommand>,
    #[command(flatten)]
    key: KeyArgs,
    /// Have the server sign the tree as it is now first.
    #[arg(long)]
    fresh: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointCommand {
    /// A witness: fetch the latest checkpoint every --interval, check its
    /// signature and that it extends the one kept in --state, keep it;
    /// exits 1 on a bad signature, another log, a rollback or a fork.
    #[command(
        after_help = "Examples:\n  auditlog checkpoint watch --key \"$(cat log.vkey)\" --state kept.note\n  auditlog checkpoint watch --key \"$(cat log.vkey)\" --state kept.note --once   # from cron"
    )]
    Watch(crate::witness::WatchArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProofCommand {
    /// Prove a record is in the log: its inclusion proof against the latest
    /// signed checkpoint, checked here; exits 1 when it does not verify.
    #[command(after_help = "Example:\n  auditlog proof inclusion 42 --key \"$(cat log.vkey)\"")]
    Inclusion {
        /// The record's seq.
        seq: u64,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Prove the log only grew since a checkpoint you kept: its consistency
    /// proof to the latest one, checked here; exits 1 when it does not
    /// verify (the log was rolled back or rewritten).
    #[command(
        after_help = "Example:\n  auditlog checkpoint --json | jq -j .note > old.note   # some time earlier\n  auditlog proof consistency old.note --key \"$(cat log.vkey)\""
    )]
    Consistency {
        /// A signed checkpoint kept earlier (the note's text).
        old: std::path::PathBuf,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// The key to check with: the user's, or the server's (and a warning).
async fn key_of(client: &Client, args: &KeyArgs) -> Result<(VerifierKey, bool), CliError> {
    let (text, trusted) = match &args.key {
        Some(k) => (k.clone(), true),
        None => (client.checkpoint(true).await?.verifier_key, false),
    };
    let key = VerifierKey::parse(&text).map_err(|e| CliError::Usage(format!("--key: {e}")))?;
    Ok((key, trusted))
}

fn untrusted_note(trusted: bool) -> &'static str {
    if trusted {
        ""
    } else {
        " (checked with the key the server sent: pass --key to check against a key you trust)"
    }
}

fn checkpoint_json(c: &VerifiedCheckpoint, key: &VerifierKey, trusted: bool) -> serde_json::Value {
    serde_json::json!({
        "origin": c.checkpoint.origin,
        "tree_size": c.checkpoint.size,
        "root_hash": hex(&c.checkpoint.root),
        "note": c.note,
        "verifier_key_id": format!("{:08x}", key.id),
        "key_given": trusted,
        "verified": true,
    })
}

/// A signed note a person kept in a file, as the note's parser takes it:
/// whatever whitespace follows its last signature line (the newline
/// `jq -r` adds, or an editor's) is cut back to that line's own newline.
///
/// The leniency is here, where the CLI reads a file, and not in
/// `auditlog_proof`'s parser: that one reads notes as they come over the
/// wire and stays as strict as the C2SP format. Only the end of the file
/// is touched, after the last signature line: the signatures cover the
/// text above the empty line, so nothing they vouch for changes.
pub(crate) fn kept_note(text: &str) -> String {
    let mut note = text.trim_end().to_owned();
    note.push('\n');
    note
}

pub(crate) fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn checkpoint(
    client: &Client,
    args: CheckpointArgs,
    json: bool,
) -> Result<(), CliError> {
    if let Some(CheckpointCommand::Watch(watch)) = args.watch {
        return crate::witness::watch(client, watch, json).await;
    }
    let (key, trusted) = key_of(client, &args.key).await?;
    let verified = client.verified_checkpoint(&key, args.fresh).await?;
    if json {
        say!("{}", checkpoint_json(&verified, &key, trusted));
        return Ok(());
    }
    let c = &verified.checkpoint;
    say!(
        "OK: checkpoint of {} signed by {}+{:08x}{}",
        c.origin,
        key.name,
        key.id,
        untrusted_note(trusted)
    );
    say!("tree size: {}", c.size);
    say!("root hash: {}", hex(&c.root));
    say!("");
    say!("{}", verified.note.trim_end());
    Ok(())
}

pub(crate) async fn run(
    client: &Client,
    command: ProofCommand,
    json: bool,
) -> Result<(), CliError> {
    match command {
        ProofCommand::Inclusion { seq, key } => {
            if seq == 0 {
                return Err(CliError::Usage("seqs start at 1".into()));
            }
            let (key, trusted) = key_of(client, &key).await?;
            let proven = client.prove_inclusion(seq, &key).await?;
            let c = &proven.checkpoint.checkpoint;
            if gap_seq(&proven.line) == Some(seq) {
                return Err(CliError::Failed(format!(
                    "seq {seq} is not in {}: the signed checkpoint of tree size {} holds the gap \
                     leaf for it (\"{}\"): its record was cut from the log; `auditlog integrity` \
                     says where",
                    c.origin,
                    c.size,
                    String::from_utf8_lossy(&proven.line)
                )));
            }
            if json {
                let mut out = checkpoint_json(&proven.checkpoint, &key, trusted);
                out["seq"] = seq.into();
                out["proof_hashes"] = proven.proof_len.into();
                out["line"] = String::from_utf8_lossy(&proven.line).into();
                say!("{out}");
            } else {
                say!(
                    "OK: seq {seq} is in {} under the signed checkpoint of tree size {} (root {}, \
                     {} proof hashes){}",
                    c.origin,
                    c.size,
                    hex(&c.root),
                    proven.proof_len,
                    untrusted_note(trusted)
                );
                if proven.line.is_empty() {
                    say!(
                        "(the record is no longer in the log: purged by retention, or cut, which \
                         `auditlog integrity` reports; its leaf hash is proved)"
                    );
                } else {
                    // One line, as stored: a newline in it is shown escaped.
                    let line = String::from_utf8_lossy(&proven.line);
                    say!("{}", crate::format::printable(&line, false));
                }
            }
            Ok(())
        }
        ProofCommand::Consistency { old, key } => {
            let (key, trusted) = key_of(client, &key).await?;
            let text = std::fs::read_to_string(&old)
                .map(|text| kept_note(&text))
                .map_err(|e| CliError::Io(format!("cannot read {}: {e}", old.display())))?;
            let old_checkpoint = key
                .open_checkpoint(&text)
                .map_err(|e| CliError::Failed(format!("{}: {e}", old.display())))?;
            let new = client.verified_checkpoint(&key, false).await?;
            let (first, second) = (old_checkpoint.size, new.checkpoint.size);
            if second < first {
                return Err(CliError::Failed(format!(
                    "the log's latest checkpoint has tree size {second}, smaller than the {first} \
                     kept in {}: the log was rolled back",
                    old.display()
                )));
            }
            let proof = client.consistency_proof(first, second).await?;
            let hashes = proof
                .hashes
                .iter()
                .map(|h| h.as_slice().try_into())
                .collect::<Result<Vec<Hash>, _>>()
                .map_err(|_| CliError::Failed("a proof hash is not 32 bytes".into()))?;
            verify_consistency(
                first,
                second,
                &old_checkpoint.root,
                &new.checkpoint.root,
                &hashes,
            )
            .map_err(|e| {
                CliError::Failed(format!(
                    "the log at tree size {second} does not extend the checkpoint of size {first} \
                     kept in {}: {e}",
                    old.display()
                ))
            })?;
            if json {
                let mut out = checkpoint_json(&new, &key, trusted);
                out["first_size"] = first.into();
                say!("{out}");
            } else {
                say!(
                    "OK: the log at tree size {second} extends the kept checkpoint of size \
                     {first}{}",
                    untrusted_note(trusted)
                );
            }
            Ok(())
        }
    }
}
