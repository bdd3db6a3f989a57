//! PostgreSQL: Debian's server, `initdb` into a temp dir and started on a
//! free 127.0.0.1 port with every durability setting on, an `audit_events`
//! table with indexes on lead, type and time, driven by tokio-postgres.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futures::SinkExt as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::{BATCH_SIZE, BoxError, EVENTS_PER_LEAD, events, history_lead, load, pool};

/// Connections in the pool: one per caller, up to the 64 of the widest shape.
const POOL: usize = 64;

/// The durability settings: every commit is on stable storage before it is
/// answered, as auditlog's `durability = fsync`.
const SETTINGS: &[&str] = &[
    "fsync=on",
    "synchronous_commit=on",
    "full_page_writes=on",
    "max_connections=100",
];

const SCHEMA: &str = "
    CREATE TABLE audit_events (
        id bigserial PRIMARY KEY,
        ts timestamptz NOT NULL DEFAULT now(),
        event_type text NOT NULL,
        lead_id text,
        workflow_id text,
        actor text,
        details jsonb
    );
    CREATE INDEX audit_events_lead ON audit_events (lead_id);
    CREATE INDEX audit_events_type ON audit_events (event_type);
    CREATE INDEX audit_events_ts ON audit_events (ts);
";

const COLUMNS: &str = "event_type, lead_id, workflow_id, actor, details";

/// A row as the client sends it (`details` as JSON text, cast to jsonb).
struct Row {
    event_type: String,
    lead_id: String,
    workflow_id: String,
    actor: String,
    details: String,
}

impl Row {
    fn of(e: &events::Event) -> Row {
        Row {
            event_type: e.event_type.to_owned(),
            lead_id: e.lead_id.clone(),
            workflow_id: e.workflow.to_owned(),
            actor: e.actor.to_owned(),
            details: serde_json::Value::Object(e.details.clone()).to_string(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.event_type,
            &self.lead_id,
            &self.workflow_id,
            &self.actor,
            &self.details,
        ]
    }
}

/// One pooled connection with its prepared statements.
struct Conn {
    client: Client,
    insert_one: Statement,
    insert_batch: Statement,
}

pub(crate) struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    postmaster: u32,
    conns: Vec<Conn>,
    select: Statement,
    rows: Vec<Row>,
    stopped: bool,
}

impl Postgres {
    /// Starts a fresh cluster in `parent`/postgres; `Ok(Err(reason))` when
    /// the binaries are not installed.
    pub(crate) async fn start(parent: &Path) -> Result<Result<Postgres, String>, BoxError> {
        let Some(bin) = find_bin() else {
            return Ok(Err(
                "no initdb/pg_ctl under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
                    .to_owned(),
            ));
        };
        let dir = parent.join("postgres");
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        // initdb refuses to run as root: then the cluster is the postgres
        // user's, as Debian's own clusters are.
        let as_postgres = is_root();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let mut initdb = pg_command(as_postgres, &bin, "initdb");
        initdb
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data);
        run(&mut initdb)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            dir.display()
        );
        for s in SETTINGS {
            let _ = write!(options, " -c {s}");
        }
        let mut pg_ctl = pg_command(as_postgres, &bin, "pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-o", &options, "start"]);
        run(&mut pg_ctl)?;
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid"))?;
        let postmaster = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("postmaster.pid names no pid")?;
        let first = connect(port).await?;
        first.batch_execute(SCHEMA).await?;
        drop(first);
        let values: Vec<String> = (0..BATCH_SIZE)
            .map(|r| {
                let p = r * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${}::text::jsonb)",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                )
            })
            .collect();
        let batch_sql = format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES {}",
            values.join(", ")
        );
        let one_sql = format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5::text::jsonb)"
        );
        let mut conns = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            let client = connect(port).await?;
            let insert_one = client.prepare(&one_sql).await?;
            let insert_batch = client.prepare(&batch_sql).await?;
            conns.push(Conn {
                client,
                insert_one,
                insert_batch,
            });
        }
        // Histories are read on the first connection of the pool.
        let select = conns[0]
            .client
            .prepare(
                "SELECT id, ts::text, event_type, lead_id, workflow_id, actor, details::text \
                 FROM audit_events WHERE lead_id = $1 ORDER BY id",
            )
            .await?;
        let pg = Postgres {
            bin,
            data,
            as_postgres,
            postmaster,
            conns,
            select,
            rows: pool().iter().map(Row::of).collect(),
            stopped: false,
        };
        Ok(Ok(pg))
    }

    pub(crate) async fn send(&self, worker: usize, i: usize, batch: bool) -> Result<u64, BoxError> {
        let conn = &self.conns[worker % self.conns.len()];
        if batch {
            let first = (i * BATCH_SIZE) % (self.rows.len() - BATCH_SIZE + 1);
            let params: Vec<&(dyn ToSql + Sync)> = self.rows[first..first + BATCH_SIZE]
                .iter()
                .flat_map(Row::params)
                .collect();
            let n = conn.client.execute(&conn.insert_batch, &params).await?;
            Ok(n)
        } else {
            let row = &self.rows[i % self.rows.len()];
            let n = conn.client.execute(&conn.insert_one, &row.params()).await?;
            Ok(n)
        }
    }

    /// Loads `rows` history events with `COPY ... FROM STDIN` (text format).
    pub(crate) async fn fill(&self, rows: usize) -> Result<(), BoxError> {
        let leads = rows.div_ceil(EVENTS_PER_LEAD);
        let client = &self.conns[0].client;
        let sink = client
            .copy_in(&format!("COPY audit_events ({COLUMNS}) FROM STDIN"))
            .await?;
        let mut sink = std::pin::pin!(sink);
        let mut chunk = String::new();
        for n in 0..rows {
            let row = Row::of(&events::event(n, history_lead(n, leads)));
            for (i, field) in [
                &row.event_type,
                &row.lead_id,
                &row.workflow_id,
                &row.actor,
                &row.details,
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    chunk.push('\t');
                }
                copy_escape(&mut chunk, field);
            }
            chunk.push('\n');
            if chunk.len() > 1 << 20 {
                sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                    .await?;
            }
        }
        if !chunk.is_empty() {
            sink.send(bytes::Bytes::from(chunk)).await?;
        }
        sink.as_mut().finish().await?;
        client.batch_execute("ANALYZE audit_events").await?;
        Ok(())
    }

    /// A lead's whole history, oldest first, `details` parsed as the
    /// application would.
    pub(crate) async fn history(&self, lead: &str) -> Result<usize, BoxError> {
        let rows = self.conns[0].client.query(&self.select, &[&lead]).await?;
        for row in &rows {
            let _: i64 = row.try_get(0)?;
            for column in 1..6 {
                let _: Option<&str> = row.try_get(column)?;
            }
            if let Some(text) = row.try_get::<_, Option<&str>>(6)? {
                let _: serde_json::Value = serde_json::from_str(text)?;
            }
        }
        Ok(rows.len())
    }

    /// CPU ticks of the postmaster and its backends.
    pub(crate) fn ticks(&self) -> u64 {
        load::process_tree_ticks(self.postmaster)
    }

    pub(crate) fn stop(mut self) -> Result<(), BoxError> {
        self.stopped = true;
        self.conns.clear();
        let mut pg_ctl = pg_command(self.as_postgres, &self.bin, "pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        run(&mut pg_ctl)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.stopped {
            let mut pg_ctl = pg_command(self.as_postgres, &self.bin, "pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]);
            let _ = run(&mut pg_ctl);
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`,
/// `pg_ctl` and `postgres`.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| bin.join(b).is_file())
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A PostgreSQL program, run as the postgres user when we are root.
fn pg_command(as_postgres: bool, bin: &Path, program: &str) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

/// Runs `command` to completion; its output is shown only when it fails.
fn run(command: &mut Command) -> Result<(), BoxError> {
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .into())
}

async fn connect(port: u16) -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        NoTls,
    )
    .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// Appends `field` in COPY's text format (backslash escapes).
fn copy_escape(out: &mut String, field: &str) {
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}
