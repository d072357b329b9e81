//! Fake upstreams that count packets, an in-process forwarder on
//! 127.0.0.1:0, the binary as a child process, and clients.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use signpost_forward::{BuildOptions, ForwarderConfig};
use signpost_server::{Server, ServerHandle};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, Rcode, RecordType, Section};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// What a fake upstream does with one query.
pub(crate) type Handler = Arc<dyn Fn(&Message<'_>) -> Option<Vec<u8>> + Send + Sync>;

/// A DNS server on loopback (UDP and TCP, one port) that counts what it gets.
pub(crate) struct FakeUpstream {
    pub(crate) address: SocketAddr,
    queries: Arc<AtomicUsize>,
    names: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeUpstream {
    pub(crate) async fn start(handler: Handler) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await.unwrap()
    }

    /// On a given address (port 53 of a loopback address needs privileges: None if refused).
    pub(crate) async fn start_on(address: SocketAddr, handler: Handler) -> Option<Self> {
        let udp = UdpSocket::bind(address).await.ok()?;
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.ok()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let (handler, queries, names) = (handler.clone(), queries.clone(), names.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65535];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buffer).await else { return };
                    let Ok(message) = Message::parse(&buffer[..len]) else { continue };
                    queries.fetch_add(1, Ordering::SeqCst);
                    if let Ok(Some(question)) = message.first_question() {
                        names.lock().unwrap().push(question.name().to_string());
                    }
                    if let Some(response) = handler(&message) {
                        let _ = udp.send_to(&response, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (queries, names) = (queries.clone(), names.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else { return };
                    let (handler, queries, names) = (handler.clone(), queries.clone(), names.clone());
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut query = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            let Ok(message) = Message::parse(&query) else { return };
                            queries.fetch_add(1, Ordering::SeqCst);
                            if let Ok(Some(question)) = message.first_question() {
                                names.lock().unwrap().push(question.name().to_string());
                            }
                            let Some(response) = handler(&message) else { continue };
                            let _ = stream.write_u16(response.len() as u16).await;
                            let _ = stream.write_all(&response).await;
                        }
                    });
                }
            })
        };
        Some(Self { address, queries, names, tasks: vec![udp_task, tcp_task] })
    }

    /// Answers every A query with `address` (TTL 300), other types NODATA.
    pub(crate) async fn answering(address: Ipv4Addr) -> Self {
        Self::start(Arc::new(move |query| Some(answer_a(query, address, 300)))).await
    }

    /// Never answers.
    pub(crate) async fn silent() -> Self {
        Self::start(Arc::new(|_| None)).await
    }

    /// Answers SERVFAIL.
    pub(crate) async fn servfail() -> Self {
        Self::start(Arc::new(|query| Some(response(query, Rcode::SERVFAIL, None)))).await
    }

    /// Packets received (UDP datagrams and TCP messages).
    pub(crate) fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// The question names received, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

/// A loopback address with nothing listening on it (the port was just freed).
pub(crate) fn closed_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A response to `query` with `rcode` and, for an A question, one A record.
pub(crate) fn response(query: &Message<'_>, rcode: Rcode, address: Option<(Ipv4Addr, u32)>) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
    let flags = builder.header_mut().flags.with_ra(true);
    builder.set_flags(flags);
    builder.set_rcode(rcode);
    let question = query.first_question().unwrap().unwrap();
    if let Some((address, ttl)) = address
        && question.qtype() == RecordType::A
    {
        builder.push(Section::Answer, &question.name(), Class::IN, ttl, &signpost_wire::RData::A(address)).unwrap();
    }
    if query.edns().unwrap().is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().unwrap();
    buffer
}

pub(crate) fn answer_a(query: &Message<'_>, address: Ipv4Addr, ttl: u32) -> Vec<u8> {
    response(query, Rcode::NOERROR, Some((address, ttl)))
}

/// A forwarder built from TOML and started in-process. The text gets a UDP
/// and a TCP listener on 127.0.0.1:0 (one worker) in front of it.
pub(crate) async fn start(toml: &str) -> ServerHandle {
    start_in(toml, Path::new(".")).await
}

pub(crate) async fn start_in(toml: &str, base_dir: &Path) -> ServerHandle {
    let text = format!("{toml}\n{LISTENERS}");
    let config = ForwarderConfig::from_toml(&text, "test.toml").unwrap_or_else(|error| panic!("{error}"));
    // Never the system's resolv.conf: a configuration without a default gets one that leads nowhere.
    let resolv = std::env::temp_dir().join(format!("signpost-forward-test-{}-resolv.conf", std::process::id()));
    std::fs::write(&resolv, "nameserver 127.0.0.254\n").unwrap();
    let options = BuildOptions {
        base_dir: base_dir.to_path_buf(),
        resolv_conf: Some(resolv),
        save_allocations: true,
        ..BuildOptions::default()
    };
    let forwarder = config.build(&options).unwrap_or_else(|error| panic!("{error}"));
    Server::builder()
        .config(forwarder.server)
        .rules(forwarder.rules)
        .upstreams(forwarder.upstreams)
        .start()
        .await
        .unwrap()
}

/// UDP and TCP listeners on one free loopback port, one UDP worker.
pub(crate) const LISTENERS: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 0
transport = "udp"
workers = 1

[[listeners]]
address = "127.0.0.1"
port = 0
transport = "tcp"
"#;

pub(crate) fn udp(server: &ServerHandle) -> SocketAddr {
    server.udp_addrs()[0]
}

/// A hickory resolver pointed only at `address` (UDP), built from an
/// explicit configuration (never the system's), without a cache or retries.
pub(crate) fn resolver(address: SocketAddr) -> Resolver<TokioRuntimeProvider> {
    let mut connection = ConnectionConfig::udp();
    connection.port = address.port();
    let server = NameServerConfig::new(address.ip(), true, vec![connection]);
    let mut builder =
        Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.cache_size = 0;
    options.attempts = 1;
    options.timeout = Duration::from_secs(5);
    options.try_tcp_on_error = false;
    builder.build().unwrap()
}

/// The answer records of `name` `qtype` as `ttl data` strings, via hickory.
pub(crate) async fn lookup(address: SocketAddr, name: &str, qtype: RecordType) -> Vec<(u32, String)> {
    let qtype = hickory_resolver::proto::rr::RecordType::from(qtype.0);
    match resolver(address).lookup(name, qtype).await {
        Ok(lookup) => lookup.answers().iter().map(|record| (record.ttl, record.data.to_string())).collect(),
        Err(error) => panic!("lookup of {name} {qtype} failed: {error}"),
    }
}

/// The answer data of `name` A, via hickory.
pub(crate) async fn addresses(address: SocketAddr, name: &str) -> Vec<String> {
    lookup(address, name, RecordType::A).await.into_iter().map(|(_, data)| data).collect()
}

/// A query message with RD set.
pub(crate) fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).unwrap();
    builder.set_id(0x4d2);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), qtype, Class::IN).unwrap();
    builder.finish().unwrap();
    buffer
}

/// Ask over UDP; the rcode and the answers (`ttl data`), or None after `wait`.
pub(crate) async fn ask(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    wait: Duration,
) -> Option<(Rcode, Vec<String>)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(name, qtype), server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await.ok()?.ok()?;
    let message = Message::parse(&buffer[..len]).unwrap();
    let answers = message
        .answers()
        .unwrap()
        .map(|record| {
            let record = signpost_wire::RecordBuf::from_record(&record.unwrap()).unwrap();
            format!("{} {}", record.ttl, record.data)
        })
        .collect();
    Some((message.rcode().unwrap(), answers))
}

/// A scratch directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "signpost-forward-test-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A free loopback port (UDP and TCP were both free a moment ago).
pub(crate) fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// signpost-forward running as a child process, stopped on drop.
pub(crate) struct Child {
    process: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
    /// The first UDP listener.
    pub(crate) udp: SocketAddr,
}

impl Child {
    /// Start the binary with `args` and wait (at most 20 s) for "ready".
    pub(crate) fn start(args: &[&str], dir: &TempDir) -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let stderr = dir.0.join(format!("stderr-{}.log", NEXT.fetch_add(1, Ordering::SeqCst)));
        let mut process = Command::new(env!("CARGO_BIN_EXE_signpost-forward"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready, ready_receiver) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line == "ready" {
                        let _ = ready.send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if ready_receiver.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = process.try_wait() {
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = process.wait();
                return Err("did not become ready within 20 s".into());
            }
        }
        let udp = lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|line| line.strip_prefix("listening on udp ")?.parse().ok())
            .ok_or("no UDP listener printed")?;
        Ok(Self { process, lines, stderr, udp })
    }

    /// What it printed on standard output.
    pub(crate) fn stdout(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Send SIGHUP (reload).
    pub(crate) fn hangup(&self) {
        let pid = libc::pid_t::try_from(self.process.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid with a valid signal number has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// Wait (at most `limit`) until the log contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 5 s).
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.process.try_wait() {
            return status;
        }
        let pid = libc::pid_t::try_from(self.process.id()).unwrap();
        // SAFETY: as in `hangup`.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        self.process.wait().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Run the binary to completion (for check-config and start-up failures).
pub(crate) fn run_to_end(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_signpost-forward")).args(args).stdin(Stdio::null()).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Poll `check` every 50 ms until it is true or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
