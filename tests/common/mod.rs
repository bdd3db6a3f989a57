//! Shared helpers for the end-to-end tests: a real server on 127.0.0.1 port 0
//! with its data in a temp dir, reached through the real client.
//!
//! [`TestServer`] runs the server in-process (clean stop, restart on the same
//! directory); [`ServerProcess`] runs the `auditlog-server` binary, for tests
//! that kill it with SIGKILL.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditlog_client::Client;
use auditlog_server::Config;
use tokio::sync::oneshot;

/// A 32-byte test key, so tests can also check signatures themselves.
pub const TEST_KEY: &str = "test-key-0123456789abcdef0123456789";

/// A server running in this process.
pub struct TestServer {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// Owns the temp dir unless the test supplied its own directory.
    _temp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), auditlog_server::ServerError>>>,
}

impl TestServer {
    /// Starts a server on a fresh temp dir with the default config.
    pub async fn start() -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = TestServer::start_in(&dir, |_| {}).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `dir`, letting the test adjust the config.
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        adjust(&mut config);
        let protected = !config.tokens.is_empty();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(auditlog_server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            url: format!("http://{addr}"),
            addr,
            data_dir: dir.to_path_buf(),
            _temp: None,
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_ready(protected).await;
        server
    }

    /// Waits until the log is recovered and calls are served. A server with
    /// tokens refuses an anonymous GetStats, so there health, which needs no
    /// token and turns SERVING at the same moment, tells.
    async fn wait_ready(&self, protected: bool) {
        for _ in 0..200 {
            if let Ok(client) = Client::connect(&self.url).await {
                let ready = if protected {
                    serving(&self.url).await
                } else {
                    client.stats(None).await.is_ok()
                };
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server at {} did not become ready", self.url);
    }

    /// A client connected to this server.
    pub async fn client(&self) -> Client {
        Client::connect(&self.url).await.unwrap()
    }

    /// Stops the server cleanly and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the server and starts a new one on the same directory (and temp
    /// dir ownership), with the same config adjustment.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        self.stop().await;
        let temp = self._temp.take();
        let mut next = TestServer::start_in(&self.data_dir, adjust).await;
        next._temp = temp;
        next
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asks the health service at `url` how the server is, sending `token` as a
/// bearer token if one is given. A server that cannot be reached is
/// UNAVAILABLE.
pub async fn health(
    url: &str,
    token: Option<&str>,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status())
}

/// Whether the server at `url` reports SERVING through the health service.
pub async fn serving(url: &str) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    matches!(health(url, None).await, Ok(ServingStatus::Serving))
}

/// The path of a workspace binary. The workspace's binaries are built (or
/// found up to date) once per test process, so a test never runs a stale
/// binary, also when run alone (`cargo test --test cli` does not build the
/// other packages' binaries by itself).
pub fn workspace_bin(_package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    // Test binaries live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "--workspace", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the workspace binaries failed");
    });
    dir.join(name)
}

/// The `auditlog-server` binary running as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts the binary on `dir` and a free port, waiting until it serves.
    pub async fn spawn(dir: &Path) -> ServerProcess {
        ServerProcess::spawn_with(dir, &[]).await
    }

    /// [`ServerProcess::spawn`] with more environment variables, e.g.
    /// `("AUDITLOG_SHUTDOWN_GRACE_SECS", "5")`.
    pub async fn spawn_with(dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let bin = workspace_bin("auditlog-server", "auditlog-server");
        // Find a free port: bind port 0, note it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .env("AUDITLOG_HMAC_KEY", TEST_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let process = ServerProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: dir.to_path_buf(),
        };
        for _ in 0..400 {
            if let Ok(client) = Client::connect(&process.url).await
                && client.stats(None).await.is_ok()
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("auditlog-server at {} did not become ready", process.url);
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the signal `name` (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to exit, failing the test when it is still
    /// running after `limit`.
    pub async fn wait_exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "auditlog-server is still running {limit:?} later"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Helpers for the tests that edit the data directory behind the server's
// back (integrity.rs, recovery.rs).

impl TestServer {
    /// Starts a server on a fresh temp dir it owns, letting the test adjust
    /// the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let mut server = TestServer::start_in(temp.path(), adjust).await;
        server._temp = Some(temp);
        server
    }

    /// Stops the server, lets `edit` change the files in its data directory
    /// while nothing runs, then starts a new server on the same directory (and
    /// temp dir ownership) with `adjust`.
    pub async fn restart_after(
        mut self,
        edit: impl FnOnce(&Path),
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        self.stop().await;
        edit(&self.data_dir);
        let temp = self._temp.take();
        let mut next = TestServer::start_in(&self.data_dir, adjust).await;
        next._temp = temp;
        next
    }
}

/// Every event in the log in seq order: StreamEvents from seq 1 without
/// `follow`, the export path.
pub async fn all_events(client: &Client) -> Vec<auditlog_client::pb::Event> {
    use futures::StreamExt as _;
    let stream = client
        .stream(auditlog_client::Query::new(), 1, false)
        .await
        .unwrap();
    stream.map(|e| e.unwrap()).collect().await
}

/// Asserts the log is whole: seqs 1..=head without a gap, every receipt in
/// `acked` at its seq with its id and signature, verification clean, and the
/// statistics agreeing. Returns the events.
pub async fn assert_whole(
    client: &Client,
    acked: &[auditlog_client::pb::Receipt],
) -> Vec<auditlog_client::pb::Event> {
    let events = all_events(client).await;
    let head = events.len() as u64;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "seqs are not contiguous"
    );
    for r in acked {
        let e = events
            .get(usize::try_from(r.seq).unwrap() - 1)
            .unwrap_or_else(|| panic!("acknowledged seq {} is gone (head {head})", r.seq));
        assert_eq!(
            (&e.id, &e.signature),
            (&r.id, &r.signature),
            "seq {}",
            r.seq
        );
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.events_checked, report.head_seq), (head, head));
    let stats = client.stats(None).await.unwrap();
    assert_eq!((stats.total_events, stats.head_seq), (head, head));
    events
}

/// The same event for the same idempotency key, so a retry is a true retry.
pub fn keyed(key: &str) -> auditlog_client::NewEvent {
    auditlog_client::NewEvent::crm_update("LEAD-7", "hubspot", key, &["stage"]).idempotency_key(key)
}

/// Logs one [`keyed`] event per key: with `Log` for one key, `LogBatch` for
/// more.
pub async fn send(
    client: &Client,
    keys: &[String],
) -> Result<Vec<auditlog_client::pb::Receipt>, auditlog_client::Error> {
    match keys {
        [key] => Ok(vec![client.log(keyed(key)).await?]),
        _ => client.log_batch(keys.iter().map(|k| keyed(k))).await,
    }
}

/// Writers racing on connections of their own until the server stops
/// answering (recovery.rs, shutdown.rs). Each logs calls of its size (one
/// `Log`, or a `LogBatch` above 1) of [`keyed`] events with fresh keys
/// `<name>-<call>-<k>`.
pub struct Writers {
    tasks: Vec<tokio::task::JoinHandle<Written>>,
    /// Events acknowledged so far, by all writers.
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// One writer's part: what it got acknowledged, and the keys of the call it
/// was waiting on when the server stopped answering.
#[derive(Default)]
struct Written {
    acked: Vec<auditlog_client::pb::Receipt>,
    pending: Vec<String>,
}

impl Writers {
    /// Starts a writer for each `(name, events per call)`.
    pub async fn start(url: &str, writers: impl IntoIterator<Item = (String, usize)>) -> Writers {
        use std::sync::atomic::Ordering;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (name, size) in writers {
            let client = Client::connect(url).await.unwrap();
            let count = std::sync::Arc::clone(&count);
            tasks.push(tokio::spawn(async move {
                let mut written = Written::default();
                for call in 0.. {
                    let keys: Vec<String> =
                        (0..size).map(|k| format!("{name}-{call}-{k}")).collect();
                    match send(&client, &keys).await {
                        Ok(receipts) => {
                            count.fetch_add(receipts.len(), Ordering::Relaxed);
                            written.acked.extend(receipts);
                        }
                        Err(_) => {
                            written.pending = keys;
                            break;
                        }
                    }
                }
                written
            }));
        }
        Writers { tasks, count }
    }

    /// Waits until `n` events are acknowledged in all, failing the test
    /// after 30 s.
    pub async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.count.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(tokio::time::Instant::now() < deadline, "writers stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Once the server has stopped: every writer's receipts, and the keys of
    /// each call that was in flight (to retry with [`send`]). Fails the test
    /// when a writer is still going 20 s later.
    pub async fn finish(self) -> (Vec<auditlog_client::pb::Receipt>, Vec<Vec<String>>) {
        let mut acked = Vec::new();
        let mut pending = Vec::new();
        for task in self.tasks {
            let written = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("a writer kept going after the server stopped")
                .unwrap();
            acked.extend(written.acked);
            pending.push(written.pending);
        }
        (acked, pending)
    }
}

/// The lines of a log file, without their newlines.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Rewrites the log file at `path` as someone with write access to the data
/// directory would: `edit` changes its lines (without newlines), and the file
/// is rewritten in place with what is left, each line ending in a newline.
pub fn tamper(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines = read_lines(path);
    edit(&mut lines);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// `line` with the first `from` replaced by `to`; panics when `from` is not
/// there, so an edit that misses cannot pass unnoticed.
pub fn edit_line(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{from:?} is not in {line}");
    line.replacen(from, to, 1)
}

/// `(kind, seq, line)` of every problem a verification reported, in order.
pub fn problems(
    report: &auditlog_client::pb::VerifyIntegrityResponse,
) -> Vec<(auditlog_client::pb::ProblemKind, u64, u64)> {
    report
        .problems
        .iter()
        .map(|p| (p.kind(), p.seq, p.line))
        .collect()
}

/// A string field of a record line, e.g. `"signature"` or `"prev"`.
pub fn field(line: &str, name: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value[name].as_str().unwrap().to_owned()
}

/// The trailing `,"signature":"` of a record line, before its 64 hex digits.
const SIG_HEAD: &str = ",\"signature\":\"";

/// The bytes a record's signature covers, by the documented rule: the line
/// with `,"signature":"<64 hex>"` removed.
pub fn unsigned_part(line: &str) -> String {
    let suffix_len = SIG_HEAD.len() + 64 + "\"}".len();
    let cut = line.len() - suffix_len;
    assert_eq!(&line[cut..cut + SIG_HEAD.len()], SIG_HEAD, "{line}");
    format!("{}}}", &line[..cut])
}

/// HMAC-SHA256 of `data` under `key`, as 64 lowercase hex characters.
pub fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The record line whose signature covers `unsigned` and is `signature`.
pub fn signed(unsigned: &str, signature: &str) -> String {
    let body = unsigned.strip_suffix('}').unwrap();
    format!("{body}{SIG_HEAD}{signature}\"}}")
}

/// `line` with its signature replaced by `signature`.
pub fn with_signature(line: &str, signature: &str) -> String {
    signed(&unsigned_part(line), signature)
}

/// `line` signed anew with `key`, as someone holding the key would.
pub fn resign(line: &str, key: &[u8]) -> String {
    let unsigned = unsigned_part(line);
    signed(&unsigned, &hmac_hex(key, unsigned.as_bytes()))
}

/// A record line the server could have written: `seq` at `timestamp`,
/// chained to `prev`, signed with `key` as key `k1`.
pub fn record_line(seq: u64, timestamp: &str, prev: &str, key: &[u8]) -> String {
    let unsigned = format!(
        concat!(
            r#"{{"seq":{seq},"id":"00000000-0000-7000-8000-{seq:012}","timestamp":"{ts}","#,
            r#""event_type":"crm_update","actor":"system","lead_id":"LEAD-X","#,
            r#""workflow":null,"details":{{"fields":["stage"]}},"key_id":"k1","prev":"{prev}"}}"#
        ),
        seq = seq,
        ts = timestamp,
        prev = prev,
    );
    signed(&unsigned, &hmac_hex(key, unsigned.as_bytes()))
}

/// A config adjustment: sign with [`TEST_KEY`], so the test can sign too.
pub fn with_test_key(config: &mut Config) {
    config.hmac_key = Some(TEST_KEY.into());
}

/// SMTP and HTTP endpoints that can fail, go down and come back (alerts.rs,
/// webhooks.rs).
pub mod endpoints;

/// The `auditlog` CLI binary (built if missing, as [`workspace_bin`] does).
pub fn cli_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| workspace_bin("auditlog-client", "auditlog"))
}

/// What one run of a program did.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `program` with its stdout and stderr piped, stdin empty, and without
/// `AUDITLOG_SERVER`, `RUST_BACKTRACE` and `RUST_LOG`, so the caller's shell
/// cannot change what is tested.
pub fn piped_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("AUDITLOG_SERVER")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit; kills it and fails the test as a hang, naming
/// it `what`, when it outlives `deadline`. Blocks the thread.
pub fn wait_or_kill(
    child: &mut Child,
    deadline: Duration,
    what: impl std::fmt::Display,
) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `program ARGS` with `env` added to its end (a [`piped_command`], in
/// a blocking task, so an in-process server keeps serving), failing the test
/// as a hang if it outlives `deadline`.
pub async fn run_to_end(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    deadline: Duration,
) -> Finished {
    tokio::task::spawn_blocking(move || {
        let mut child = piped_command(&program)
            .args(&args)
            .envs(env)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let what = format!("{} {args:?}", program.display());
        let status = wait_or_kill(&mut child, deadline, what);
        Finished {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .unwrap()
}

/// Reads a pipe to its end on a thread of its own.
pub fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A client whose HTTP/2 flow-control windows are the protocol's smallest
/// default (64 KiB), so a stream it does not read backs up into the server
/// after a few hundred events instead of the 2 MiB a default window absorbs.
pub async fn small_window_client(url: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    Client::from_channel(channel)
}

/// The service names reflection `v1` lists on `ch`.
pub async fn reflection_v1_services(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = v1::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match responses.message().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("reflection v1 answered ListServices with {other:?}"),
    }
}

/// What reflection `v1alpha` answers on `ch` to `FileContainingSymbol`
/// for `symbol`.
pub async fn reflection_v1alpha_file(
    ch: tonic::transport::Channel,
    symbol: &str,
) -> Option<tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse> {
    use tonic_reflection::pb::v1alpha;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                symbol.to_owned(),
            ),
        ),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    responses.message().await.unwrap().unwrap().message_response
}

/// The names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Sealed segments not compressed yet: `audit.*.log` other than `audit.log`.
pub fn plain_sealed(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.starts_with("audit.") && n.ends_with(".log") && n != "audit.log")
        .collect()
}
