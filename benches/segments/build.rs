//! Building the segments bench's log: the cached or temporary data dir, the
//! in-process server that writes it with `LogBatch`, and waiting until every
//! sealed segment is compressed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditlog_server::Config;
use auditlog_server::bench::CHUNK_BYTES;
use futures::StreamExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::generator::Generator;
use crate::process::wait_ready;
use crate::{BATCH_SIZE, BoxError, DATA_VERSION, IN_FLIGHT, SEAL_TIMEOUT, Settings};

/// The data dir the measurements run on.
pub(crate) struct Data {
    pub(crate) dir: PathBuf,
    pub(crate) cached: bool,
    /// Deletes the data dir on drop when it is not cached.
    _temp: Option<tempfile::TempDir>,
}

pub(crate) async fn prepare_data(settings: &Settings) -> Result<Data, BoxError> {
    if !settings.cache {
        let temp = tempfile::Builder::new()
            .prefix("auditlog-segments-bench-")
            .tempdir()?;
        let dir = temp.path().join("data");
        build_log(&dir, settings).await?;
        return Ok(Data {
            dir,
            cached: false,
            _temp: Some(temp),
        });
    }
    let key = format!(
        "segments-v{DATA_VERSION}-{}ev-{}leads-{}mb-{}kchunks",
        settings.events,
        settings.leads,
        settings.segment_mb,
        CHUNK_BYTES / 1024
    );
    let root = target_dir()?.join("bench-data").join(key);
    let (dir, done) = (root.join("data"), root.join("complete"));
    if done.exists() && dir.exists() {
        println!(
            "reusing the log built by an earlier run: {} (AUDITLOG_BENCH_CACHE=0 rebuilds)",
            dir.display()
        );
        println!();
    } else {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        build_log(&dir, settings).await?;
        std::fs::write(&done, "built by benches/segments.rs\n")?;
    }
    Ok(Data {
        dir,
        cached: true,
        _temp: None,
    })
}

/// The cargo target dir this bench binary runs from
/// (`<target>/release/deps/segments-<hash>`).
pub(crate) fn target_dir() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the target dir from {}", exe.display()).into())
}

/// An in-process server and the way to stop it.
pub(crate) struct InProcess {
    pub(crate) url: String,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) task: tokio::task::JoinHandle<Result<(), auditlog_server::ServerError>>,
}

impl InProcess {
    async fn start(config: Config) -> Result<InProcess, BoxError> {
        config.validate()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(auditlog_server::run(config, listener, async {
            let _ = stopped.await;
        }));
        Ok(InProcess { url, stop, task })
    }

    pub(crate) async fn shutdown(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

pub(crate) fn config_for(dir: &Path, segment_mb: f64) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        max_file_size_mb: segment_mb,
        retention_days: 0.0,
        ..Config::default()
    }
}

async fn build_log(dir: &Path, settings: &Settings) -> Result<(), BoxError> {
    println!(
        "building the log in {} (default fsync durability, LogBatch of {BATCH_SIZE}, \
         {IN_FLIGHT} in flight)...",
        dir.display()
    );
    let started = Instant::now();
    let server = InProcess::start(config_for(dir, settings.segment_mb)).await?;
    let client = wait_ready(&server.url, || {
        if server.task.is_finished() {
            Err("the in-process server stopped".into())
        } else {
            Ok(())
        }
    })
    .await?;

    let generator = Generator {
        leads: settings.leads,
    };
    let batches = settings.events.div_ceil(BATCH_SIZE);
    let mut calls = futures::stream::iter(0..batches)
        .map(|b| {
            let size = BATCH_SIZE.min(settings.events - b * BATCH_SIZE);
            let events = generator.batch(b, size);
            let client = client.clone();
            async move { client.log_batch(events).await.map(|r| r.len() as u64) }
        })
        .buffer_unordered(IN_FLIGHT);
    let (mut written, mut next_report) = (0u64, settings.events / 10);
    while let Some(result) = calls.next().await {
        written += result?;
        if written >= next_report && written < settings.events {
            println!(
                "  {written} events ({:.0} events/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
            next_report += settings.events / 10;
        }
    }
    let ingested = started.elapsed();
    println!(
        "  {written} events in {:.1} s ({:.0} events/s)",
        ingested.as_secs_f64(),
        written as f64 / ingested.as_secs_f64()
    );
    let rotated = client.rotate(true).await?;
    if rotated.rotated {
        println!(
            "  Rotate(wait): sealed {} (seqs {}..={})",
            rotated.file, rotated.first_seq, rotated.last_seq
        );
    } else {
        println!("  Rotate(wait): nothing to seal (the last commit already rotated)");
    }
    let sealing = Instant::now();
    loop {
        let left = sealed_plain_files(dir)?;
        if left.is_empty() {
            break;
        }
        if sealing.elapsed() > SEAL_TIMEOUT {
            return Err(format!("sealed segments still not compressed: {left:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await?;
    println!(
        "  every segment compressed; built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    Ok(())
}

/// Sealed segments not compressed yet: `audit.<time>.log`.
fn sealed_plain_files(dir: &Path) -> Result<Vec<String>, BoxError> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "audit.log" && name.starts_with("audit.") && name.ends_with(".log") {
            left.push(name);
        }
    }
    Ok(left)
}
