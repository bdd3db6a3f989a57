//! `auditlog checkpoint watch`: a witness a customer runs on a machine of
//! their own. Each round it fetches the log's latest checkpoint, checks its
//! signature against the verifier key the customer was given (which also
//! names the log: a checkpoint of another log is refused), and checks that
//! it extends the checkpoint kept in the state file: the same root at the
//! same size, or a consistency proof from the kept size to the new one.
//! Then it keeps the newer one.
//!
//! The state file holds the kept signed note, nothing else (so `auditlog
//! proof consistency FILE` reads it too). It is replaced whole: written to a
//! temporary file beside it, synced, renamed over it and the directory
//! synced, so a crash leaves the old or the new checkpoint, never half of
//! one. The first round with no state file keeps whatever the key verifies
//! (trust on first use). A smaller tree (a rollback), another root at the
//! same size or a bigger tree that does not extend the kept one (a fork)
//! ends the witness with exit 1 and one line naming both checkpoints; the
//! kept checkpoint is left as it was, as the evidence.
//!
//! A checkpoint signed by a key the witness does not trust is taken only
//! across a key rotation it can check (`follow.rs`): a handover the server
//! shows, co-signed by a trusted key and the new one, that extends the
//! kept checkpoint. `--key` may also be given several times (a new key got
//! from the operator directly). Otherwise the witness exits 1.
//!
//! With `--mirror FILE` it keeps the log's records too (`mirror.rs`): each
//! round brings FILE up to the accepted checkpoint, the records checked to
//! make its root, before the checkpoint is kept.

mod follow;
pub(crate) mod mirror;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditlog_client::proof::{Checkpoint, Hash, NoteError, VerifierKey, verify_consistency};
use auditlog_client::{Client, VerifiedCheckpoint};
use clap::Args;

use crate::CliError;
use crate::proofs::{hex, kept_note};
use mirror::{Mirror, Mirrored};

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The log's verifier key (NAME+KEYID+KEY), from a channel you trust;
    /// give it again for each further key you trust (after a rotation).
    #[arg(
        long = "key",
        env = "AUDITLOG_VERIFIER_KEY",
        value_name = "VERIFIER_KEY",
        required = true
    )]
    keys: Vec<String>,
    /// The file that keeps the newest checkpoint accepted (a signed note).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// How often to fetch the latest checkpoint: 10s, 1m, ...
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    interval: String,
    /// Check once and exit (0 when the log only grew), for cron and tests.
    #[arg(long)]
    once: bool,
    /// Also keep the log itself in FILE (JSON Lines, each record as
    /// stored), each round's new records checked against the checkpoint
    /// before they are kept.
    #[arg(long, value_name = "FILE")]
    mirror: Option<PathBuf>,
}

/// What one round found, when the log is fine.
enum Round {
    /// The first checkpoint, kept on trust.
    First(Checkpoint),
    /// A bigger tree that extends the kept one.
    Grew { from: u64, to: Checkpoint },
    /// The same checkpoint as the kept one.
    Unchanged(Checkpoint),
}

impl Round {
    /// The checkpoint the round accepted.
    fn checkpoint(&self) -> &Checkpoint {
        match self {
            Round::First(c) | Round::Grew { to: c, .. } | Round::Unchanged(c) => c,
        }
    }
}

pub(crate) async fn watch(client: &Client, args: WatchArgs, json: bool) -> Result<(), CliError> {
    let keys = args
        .keys
        .iter()
        .map(|k| VerifierKey::parse(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Usage(format!("--key: {e}")))?;
    let mut trust = follow::Trust::load(keys, &args.state)?;
    let interval = humantime::parse_duration(&args.interval)
        .map_err(|e| CliError::Usage(format!("--interval {:?}: {e}", args.interval)))?;
    if interval < Duration::from_millis(100) {
        return Err(CliError::Usage("--interval must be at least 100ms".into()));
    }
    let mut mirror = match &args.mirror {
        Some(path) => Some(Mirror::open(
            path,
            read_kept(&trust, &args.state)?.as_ref(),
        )?),
        None => None,
    };
    loop {
        match round(client, &mut trust, &args.state, mirror.as_mut(), json).await {
            Ok((found, mirrored)) => {
                let mirrored = args.mirror.as_deref().zip(mirrored);
                report(&found, mirrored, args.once, json)?;
            }
            // The server being away is no finding: retry, unless once.
            Err(CliError::Client(e)) if !args.once => {
                let e = crate::format::printable(&e.to_string(), false).into_owned();
                eprintln!("auditlog: checkpoint watch: {e} (retrying)");
            }
            Err(e) => return Err(e),
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// One fetch and check; brings the mirror up to the new checkpoint, and
/// keeps the checkpoint, when it is fine.
async fn round(
    client: &Client,
    trust: &mut follow::Trust,
    state: &Path,
    mirror: Option<&mut Mirror>,
    json: bool,
) -> Result<(Round, Option<Mirrored>), CliError> {
    let response = client.checkpoint(false).await?;
    let note = response
        .checkpoint
        .as_ref()
        .map(|c| c.note.clone())
        .ok_or_else(|| CliError::Failed("the server sent no checkpoint".into()))?;
    let refused =
        |e: NoteError| CliError::Failed(format!("refused the log's latest checkpoint: {e}"));
    let new = match trust.open(&note) {
        Ok(new) => new,
        Err(e @ NoteError::NoSignature { .. }) => {
            if !follow::rotations(client, trust, &response, state, json).await? {
                return Err(follow::unknown_key(e, &note));
            }
            trust.open(&note).map_err(refused)?
        }
        Err(e) => return Err(refused(e)),
    };
    let fresh = VerifiedCheckpoint {
        checkpoint: new,
        note,
    };
    let found = match read_kept(trust, state)? {
        None => Round::First(fresh.checkpoint),
        Some(kept) if extends(client, &kept, &fresh.checkpoint).await? => Round::Grew {
            from: kept.size,
            to: fresh.checkpoint,
        },
        Some(_) => Round::Unchanged(fresh.checkpoint),
    };
    // The mirror first: a checkpoint is kept only once the records it
    // signed are (a mirror behind an unchanged one catches up too).
    let mirrored = match mirror {
        Some(mirror) => mirror.extend(client, found.checkpoint()).await?,
        None => None,
    };
    if !matches!(found, Round::Unchanged(_)) {
        keep(state, &fresh.note)?;
    }
    Ok((found, mirrored))
}

/// Checks that `new` extends `old`: true when it is bigger (its
/// consistency proof checked), false when it is the same checkpoint; an
/// error naming both on a rollback or a fork.
async fn extends(client: &Client, old: &Checkpoint, new: &Checkpoint) -> Result<bool, CliError> {
    let both = || {
        format!(
            "kept size {} root {}, now size {} root {}",
            old.size,
            hex(&old.root),
            new.size,
            hex(&new.root)
        )
    };
    if new.size < old.size {
        return Err(CliError::Failed(format!(
            "ROLLBACK: the log's tree shrank from {} to {} records ({}): it was rolled back",
            old.size,
            new.size,
            both()
        )));
    }
    if new.size == old.size {
        if new.root != old.root {
            return Err(CliError::Failed(format!(
                "FORK: the log has another root at the same size ({}): it was rewritten",
                both()
            )));
        }
        return Ok(false);
    }
    // The empty tree is a prefix of every tree.
    if old.size == 0 {
        return Ok(true);
    }
    let proof = client.consistency_proof(old.size, new.size).await?;
    let hashes = proof
        .hashes
        .iter()
        .map(|h| h.as_slice().try_into())
        .collect::<Result<Vec<Hash>, _>>()
        .map_err(|_| CliError::Failed("a consistency proof hash is not 32 bytes".into()))?;
    verify_consistency(old.size, new.size, &old.root, &new.root, &hashes).map_err(|e| {
        CliError::Failed(format!(
            "FORK: the log's new checkpoint does not extend the kept one ({}): {e}",
            both()
        ))
    })?;
    Ok(true)
}

fn report(
    found: &Round,
    mirrored: Option<(&Path, Mirrored)>,
    once: bool,
    json: bool,
) -> Result<(), CliError> {
    let (what, c, from) = match found {
        Round::First(c) => ("first", c, None),
        Round::Grew { from, to } => ("grew", to, Some(*from)),
        // One line per new checkpoint (or new records mirrored); an
        // unchanged log is news only to a single check.
        Round::Unchanged(_) if !once && mirrored.is_none() => return Ok(()),
        Round::Unchanged(c) => ("unchanged", c, Some(c.size)),
    };
    if json {
        say!(
            "{}",
            serde_json::json!({
                "accepted": what,
                "origin": c.origin,
                "tree_size": c.size,
                "root_hash": hex(&c.root),
                "previous_size": from,
                "mirrored": mirrored.map(|(file, m)| serde_json::json!({
                    "file": file.display().to_string(),
                    "from_seq": m.from,
                    "to_seq": m.to,
                })),
            })
        );
    } else {
        let how = match (what, from) {
            ("first", _) => "first checkpoint, kept on trust".to_owned(),
            ("unchanged", _) => "unchanged".to_owned(),
            (_, Some(from)) => format!("extends the kept size {from}"),
            _ => String::new(),
        };
        let mirrored = match mirrored {
            Some((file, m)) => format!(
                "; seqs {} to {} checked and mirrored into {}",
                m.from,
                m.to,
                file.display()
            ),
            None => String::new(),
        };
        say!(
            "OK: {} at tree size {} root {}: {how}{mirrored}",
            c.origin,
            c.size,
            hex(&c.root)
        );
    }
    Ok(())
}

/// The kept checkpoint, checked with the trusted keys; none when there is
/// no file. Whitespace after the note's last line is ignored (a note kept
/// by hand with `jq -r` ends in an extra newline; `keep` writes it back
/// exact). A file that holds no signed checkpoint at all is named as
/// malformed, not as another log's: only a note that parses and is not
/// signed by a trusted key, or is of another origin, is that.
fn read_kept(trust: &follow::Trust, state: &Path) -> Result<Option<Checkpoint>, CliError> {
    let malformed = |why: &dyn std::fmt::Display| {
        CliError::Failed(format!(
            "the state file {} is malformed: {why}; it should hold one signed checkpoint note, as \
             this witness keeps it: move it aside to start again from the log's latest checkpoint \
             (kept on trust, as on a first run), or put back a note you kept (written exactly: \
             `auditlog checkpoint --json | jq -j .note > FILE`)",
            state.display()
        ))
    };
    let text = match std::fs::read_to_string(state) {
        Ok(text) => kept_note(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(malformed(&"it is not UTF-8 text"));
        }
        Err(e) => {
            return Err(CliError::Io(format!(
                "cannot read {}: {e}",
                state.display()
            )));
        }
    };
    trust.open(&text).map(Some).map_err(|e| match e {
        NoteError::Malformed(_) | NoteError::BadCheckpoint(_) | NoteError::BadKey(_) => {
            malformed(&e)
        }
        NoteError::NoSignature { .. }
        | NoteError::BadSignature { .. }
        | NoteError::WrongOrigin { .. } => CliError::Failed(format!(
            "the checkpoint kept in {} is not this log's: {e} (another --key, or another file?)",
            state.display()
        )),
    })
}

/// Replaces the state file whole: temp file, sync, rename, sync the dir.
fn keep(state: &Path, note: &str) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Io(format!("cannot keep {}: {e}", state.display()));
    let dir = match state.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temp = dir.join(name);
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    file.write_all(note.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temp, state).map_err(io)?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}
