//! `auditlog`: the command-line tool for the auditlog service.
//!
//! Every subcommand talks to a server (`--server`, `AUDITLOG_SERVER`), prints
//! a readable form by default and JSON with `--json`, and on failure prints
//! one line to stderr and exits non-zero.

/// `println!` that returns an error instead of panicking when stdout is
/// gone (`auditlog query | head`); `main` treats a broken pipe as success.
/// What a terminal would act on is escaped (`format::terminal_safe`):
/// much of what is printed comes from the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        writeln!(std::io::stdout().lock(), "{}", crate::format::terminal_safe(&text))?;
    }};
}

mod admin;
mod backup;
mod bench;
mod bundle;
mod cli;
mod errors;
mod export;
mod format;
mod health;
mod integrity;
mod log;
mod performance;
mod progress;
mod proofs;
mod query;
mod report;
mod stats;
mod tail;
mod witness;

use std::ffi::OsString;
use std::process::ExitCode;

use auditlog_client::Client;
use clap::{CommandFactory as _, Parser as _};

use cli::{AlertsCommand, Cli, Command, SubjectCommand, WebhooksCommand};

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Client(#[from] auditlog_client::Error),
    #[error("invalid argument: {0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    /// The command ran but found a problem (integrity); its output says what.
    #[error("{0}")]
    Failed(String),
    /// Exit with this code and no message (health).
    #[error("")]
    Exit(u8),
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::Io(e.to_string())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // The one TLS crypto provider, installed before any connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Help and version go to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // `auditlog` alone, or a group without its subcommand (`auditlog
        // subject`): its help, on stderr.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
        // A usage error is one line, like every other error, and exits 1,
        // as grpc_health_probe does for bad arguments.
        Err(e) => {
            eprintln!("auditlog: {}", usage_error(&e, &args));
            return ExitCode::FAILURE;
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        // A closed pipe (`auditlog query | head`) is not an error.
        Err(CliError::Io(msg)) if msg.contains("Broken pipe") => ExitCode::SUCCESS,
        // One line, whatever the server put in its message.
        Err(e) => {
            eprintln!("auditlog: {}", format::printable(&e.to_string(), false));
            ExitCode::FAILURE
        }
    }
}

/// A usage error from the argument parser on one line: clap's message with
/// its context (the values possible, the arguments missing) and any tip,
/// then the help to read. clap's own form takes several lines, and its
/// usage line lists the flags given (`--server <SERVER>`) as if they were
/// required.
fn usage_error(e: &clap::Error, args: &[OsString]) -> String {
    let rendered = e.render().to_string();
    let mut line = String::new();
    for part in rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let part = part.strip_prefix("error: ").unwrap_or(part);
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    let line = line.strip_suffix(':').unwrap_or(&line);
    format!("{line}; see '{} --help'", command_path(args))
}

/// The (sub)command `args` name, as far as they name one: `auditlog
/// subject export` for `auditlog --json subject export ''`.
fn command_path(args: &[OsString]) -> String {
    let mut command = Cli::command();
    command.build();
    let mut path = vec![command.get_name().to_owned()];
    let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" || arg == "help" {
            break;
        }
        if let Some(flag) = arg.strip_prefix("--") {
            let takes_value = command
                .get_arguments()
                .any(|a| a.get_long() == Some(flag) && a.get_action().takes_values());
            if takes_value {
                args.next();
            }
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        let Some(sub) = command.find_subcommand(arg.as_ref()).cloned() else {
            break;
        };
        path.push(sub.get_name().to_owned());
        command = sub;
    }
    path.join(" ")
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    let options = cli.options()?;
    let server = cli.server_url();
    match cli.command {
        Command::Health(args) => health::run(&server, &options, args, json).await,
        Command::Report(args) => report::run(&server, options, args, json).await,
        // Offline: no server.
        Command::Bundle(bundle::BundleCommand::Verify { file, key }) => {
            bundle::verify(&file, key.as_deref(), json)
        }
        Command::Bundle(bundle::BundleCommand::VerifyMirror { file, note, key }) => {
            bundle::verify_mirror(&file, &note, &key, json)
        }
        command => {
            if let Command::Backup { dir, from } = &command {
                backup::check_local(dir, from.as_deref())?;
            }
            let client = Client::connect_with(&server, options).await?;
            dispatch(&client, command, json).await
        }
    }
}

async fn dispatch(client: &Client, command: Command, json: bool) -> Result<(), CliError> {
    match command {
        Command::Log(args) => log::run(client, args, json).await,
        Command::Query(args) => query::run(client, args, json).await,
        Command::History { lead, verbose } => query::history(client, &lead, verbose, json).await,
        Command::Stats(args) => stats::run(client, args, json).await,
        Command::Errors(args) => errors::run(client, args, json).await,
        Command::Integrity {
            from_seq,
            to_seq,
            checkpoint,
        } => integrity::run(client, from_seq, to_seq, &checkpoint, json).await,
        Command::Export(args) => export::run(client, args).await,
        Command::Tail {
            filter,
            from_seq,
            verbose,
            stored,
            reconnect,
        } => {
            let shape = if stored {
                tail::Shape::Stored
            } else if json {
                tail::Shape::Json
            } else {
                tail::Shape::Text { verbose }
            };
            tail::run(client, &filter, from_seq, shape, reconnect).await
        }
        Command::Bench(args) => bench::run(client, args, json).await,
        Command::Rotate { wait } => admin::rotate(client, wait, json).await,
        Command::Backup { dir, from } => backup::run(client, &dir, from.as_deref(), json).await,
        Command::Alerts(AlertsCommand::Test) => admin::alerts_test(client, json).await,
        Command::Alerts(AlertsCommand::Status) => admin::alerts_status(client, json).await,
        Command::Webhooks(WebhooksCommand::Status) => admin::webhooks_status(client, json).await,
        Command::Webhooks(WebhooksCommand::Secret { name }) => {
            admin::webhook_secret(client, &name, json).await
        }
        Command::Retention => admin::retention(client, json).await,
        Command::Performance {
            operation,
            since,
            until,
        } => performance::run(client, operation, since, until, json).await,
        Command::Track(args) => performance::track(client, args, json).await,
        Command::Subject(SubjectCommand::Export(args)) => export::subject(client, args).await,
        Command::Checkpoint(args) => proofs::checkpoint(client, args, json).await,
        Command::Proof(command) => proofs::run(client, command, json).await,
        Command::Bundle(bundle::BundleCommand::Export(args)) => {
            bundle::export(client, args, json).await
        }
        Command::Health(_) | Command::Report(_) | Command::Bundle(_) => {
            unreachable!("handled before connecting")
        }
    }
}
