//! `auditlog tail`: follows live events (after any history from
//! `--from-seq`) until Ctrl-C or until the server ends the stream; with
//! `--reconnect`, across lost connections and server restarts.

use std::io::{IsTerminal as _, Write as _};

use auditlog_client::{Client, Error, Followed, Query};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::CliError;
use crate::cli::FilterArgs;
use crate::format::{self, event_json, printable, terminal_safe, timestamp_text};

/// How `tail` prints each event.
pub(crate) enum Shape {
    /// One line of the main fields, with `details` when verbose.
    Text { verbose: bool },
    /// The event as a JSON object (`--json`).
    Json,
    /// The record exactly as stored (`--stored`).
    Stored,
}

pub(crate) async fn run(
    client: &Client,
    filter: &FilterArgs,
    from_seq: Option<u64>,
    shape: Shape,
    reconnect: bool,
) -> Result<(), CliError> {
    let from = match from_seq {
        Some(s) => s,
        None => client.stats(None).await?.head_seq + 1,
    };
    let query = filter.query()?.details_as_json();
    // Stored lines go out byte for byte into a file or a pipe (a mirror, a
    // verifier); on a terminal, a line a hostile server made (or a record's
    // C1 or bidirectional characters, which JSON leaves unescaped) is shown
    // through `terminal_safe`, as every other line the CLI prints.
    let raw = matches!(shape, Shape::Stored) && !std::io::stdout().is_terminal();
    if !matches!(shape, Shape::Json) {
        eprintln!("following events from seq {from} (Ctrl-C to stop)");
    }
    let mut stream = if reconnect {
        followed(client, query, from, shape)
    } else {
        streamed(client, query, from, shape).await?
    };
    let mut out = std::io::stdout().lock();
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.next() => next,
        };
        let line = match next {
            Some(line) => line?,
            None => return Err(CliError::Failed("the server ended the stream".into())),
        };
        if raw {
            out.write_all(&line)?;
        } else {
            out.write_all(terminal_safe(&String::from_utf8_lossy(&line)).as_bytes())?;
        }
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

/// Each event as the bytes of its output line, without the newline.
type Lines = BoxStream<'static, Result<Vec<u8>, Error>>;

/// One stream: it ends when the server ends it or the connection is lost.
async fn streamed(client: &Client, query: Query, from: u64, shape: Shape) -> Result<Lines, Error> {
    Ok(match shape {
        Shape::Stored => client.stream_lines(query, from, true).await?,
        Shape::Json => client
            .stream(query, from, true)
            .await?
            .map(|e| e.map(|e| event_json(&e).to_string().into_bytes()))
            .boxed(),
        Shape::Text { verbose } => client
            .stream(query, from, true)
            .await?
            .map(move |e| e.map(|e| text_line(&e, verbose).into_bytes()))
            .boxed(),
    })
}

/// A follow across lost connections (`--reconnect`): losses and
/// resumptions are told on stderr, one line each (the first loss of an
/// outage only, not every retry).
fn followed(client: &Client, query: Query, from: u64, shape: Shape) -> Lines {
    fn told<T: 'static>(
        stream: auditlog_client::FollowStream<T>,
        line: impl Fn(T) -> Vec<u8> + Send + 'static,
    ) -> Lines {
        let mut out_of_touch = false;
        stream
            .filter_map(move |item| {
                let line = match item {
                    Err(e) => Some(Err(e)),
                    Ok(Followed::Item(t)) => Some(Ok(line(t))),
                    Ok(Followed::Lost { error, retry_in }) => {
                        if !std::mem::replace(&mut out_of_touch, true) {
                            eprintln!(
                                "auditlog: lost the stream ({}); reconnecting (first try in {} ms)",
                                printable(&error.to_string(), false),
                                retry_in.as_millis()
                            );
                        }
                        None
                    }
                    Ok(Followed::Resumed { node, seq }) => {
                        out_of_touch = false;
                        eprintln!(
                            "auditlog: resumed on {} after seq {seq}",
                            printable(&node, false)
                        );
                        None
                    }
                };
                std::future::ready(line)
            })
            .boxed()
    }
    match shape {
        Shape::Stored => told(client.follow_lines(query, from), |l| l),
        Shape::Json => told(client.follow(query, from), |e| {
            event_json(&e).to_string().into_bytes()
        }),
        Shape::Text { verbose } => told(client.follow(query, from), move |e| {
            text_line(&e, verbose).into_bytes()
        }),
    }
}

fn text_line(event: &auditlog_client::pb::Event, verbose: bool) -> String {
    let mut line = format!(
        "{}  {:>6}  {:<18} lead={} workflow={} actor={}",
        timestamp_text(event.timestamp.as_ref()),
        event.seq,
        printable(&event.event_type, false),
        printable(&event.lead_id, false),
        printable(&event.workflow, false),
        printable(&event.actor, false),
    );
    if !event.caller.is_empty() {
        line.push_str(" caller=");
        line.push_str(&printable(&event.caller, false));
    }
    if verbose {
        line.push_str("  ");
        line.push_str(&printable(&format::details_text(event), false));
    }
    line
}
