//! Zero-loss restarts: SIGUSR2 hands the listening sockets to a new
//! process while a client keeps asking, and sockets passed by systemd
//! socket activation (`LISTEN_FDS`) are served instead of bound.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use signpost_testkit::{Behaviour, Query, free_port, start_on_free_port, successor_in, udp_exchange};
use signpost_wire::RecordType;
use tokio::net::UdpSocket;

use crate::support::*;

/// Queries the load sends, one a millisecond at most.
const QUERIES: u16 = 2_000;
/// Of those, how many wait until the old process has exited.
const AFTER_EXIT: u16 = 200;
/// How long the last answers may take to come.
const STRAGGLERS: Duration = Duration::from_secs(5);

/// UDP (two workers, so two sockets with a queue each) and TCP on `port`,
/// the default zone to `upstream`, and a local name.
fn config(port: u16, upstream: &FakeUpstream) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntransport = \"udp\"\nworkers = 2\n\n\
         [[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntransport = \"tcp\"\n\n{}\n\
         [[zones]]\nname = \"lab.example\"\nrecords = [\"www 60 A 10.0.0.1\"]\n",
        default_zone(upstream)
    )
}

/// The binary on a fixed free port (a hand-over passes sockets by
/// address; port 0 always means a new socket).
async fn start_on_a_free_port(dir: &TempDir, upstream: &FakeUpstream) -> (RunningBinary, SocketAddr) {
    let (running, port) = start_on_free_port(|port| {
        let path = dir.write("forward.toml", config(port, upstream));
        forward(&["--config", &path.to_string_lossy()])
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    (running, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Send [`QUERIES`] distinct names (so none is a cache hit: each goes to
/// the upstream and is in flight for its delay) from one socket, at most
/// one a millisecond, the last [`AFTER_EXIT`] only once `exited` is set;
/// returns the ids answered with NOERROR and an address.
async fn load(server: SocketAddr, sent: Arc<AtomicU16>, exited: Arc<AtomicBool>) -> BTreeSet<u16> {
    let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut answered = BTreeSet::new();
            let mut buffer = [0u8; 1500];
            while answered.len() < usize::from(QUERIES) {
                let Ok(Ok(length)) = tokio::time::timeout(STRAGGLERS, socket.recv(&mut buffer)).await else { break };
                let response = &buffer[..length];
                // NOERROR with one answer: the flags' low nibble and ANCOUNT.
                if length > 12 && response[3] & 0x0f == 0 && response[6..8] == [0, 1] {
                    answered.insert(u16::from_be_bytes([response[0], response[1]]));
                }
            }
            answered
        })
    };
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for id in 0..QUERIES {
        if id == QUERIES - AFTER_EXIT {
            tokio::time::timeout(Duration::from_secs(60), async {
                while !exited.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the old process exits within a minute");
        }
        pace.tick().await;
        let bytes = Query::new(&format!("q{id}.load.example"), RecordType::A).id(id).to_bytes();
        socket.send_to(&bytes, server).await.unwrap();
        sent.store(id + 1, Ordering::Relaxed);
    }
    receiver.await.unwrap()
}

#[tokio::test]
async fn sigusr2_hands_the_sockets_over_under_load_and_no_query_is_lost() {
    // Upstream answers take 20 ms: queries are in flight at the hand-over.
    let upstream = FakeUpstream::builder()
        .otherwise(Answer::address(Ipv4Addr::new(192, 0, 2, 1).into()))
        .behaviour(Behaviour::Delay(Duration::from_millis(20)))
        .start()
        .await
        .unwrap();
    let dir = TempDir::new();
    let (old, server) = start_on_a_free_port(&dir, &upstream).await;
    let (sent, exited) = (Arc::new(AtomicU16::new(0)), Arc::new(AtomicBool::new(false)));
    let load = tokio::spawn(load(server, sent.clone(), exited.clone()));

    while sent.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    old.signal(Signal::User2).await.unwrap();
    old.wait_for_stdout("handed over 3 sockets to pid", Duration::from_secs(30)).await.unwrap();
    let successor =
        successor_in(&old.stdout_lines()).unwrap_or_else(|| panic!("no successor pid in {:?}", old.stdout_lines()));
    let sent_at_hand_over = sent.load(Ordering::Relaxed);
    let finished = old.wait(Duration::from_secs(15)).await.unwrap();
    exited.store(true, Ordering::Relaxed);
    assert!(finished.status.success(), "the old process exits 0 after draining: {}", finished.stderr);
    let sent_at_exit = sent.load(Ordering::Relaxed);

    let answered = load.await.unwrap();
    let missing: Vec<u16> = (0..QUERIES).filter(|id| !answered.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {QUERIES} unanswered (hand-over after {sent_at_hand_over} sent, old exited after {sent_at_exit}): {missing:?}",
        missing.len()
    );
    assert!(sent_at_hand_over < QUERIES - AFTER_EXIT, "the hand-over came mid-run");
    assert_eq!(addresses(server, "www.lab.example.").await, ["10.0.0.1"], "the successor serves");
    successor.terminate(PATIENCE).await.unwrap();
}

#[tokio::test]
async fn a_failed_successor_leaves_the_old_process_serving() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    let (old, server) = start_on_a_free_port(&dir, &upstream).await;
    // The successor reads the same file: broken now, it exits at start-up.
    std::fs::write(dir.path().join("forward.toml"), "[[listeners]]\nport = \"not a port\"\n").unwrap();
    old.signal(Signal::User2).await.unwrap();
    old.wait_for_stderr("hand-over to a successor: waiting for the successor failed", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(old.stderr().contains("still serving"), "{}", old.stderr());
    assert_eq!(addresses(server, "www.lab.example.").await, ["10.0.0.1"], "the old process serves on");
    assert!(stop(old).await);
}

#[tokio::test]
async fn under_systemd_the_successor_names_itself_the_main_process_before_the_old_one_stops() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    // systemd's notification socket, as `NotifyAccess=all` opens it.
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let port = free_port();
    let path = dir.write("forward.toml", config(port, &upstream));
    let old = forward(&["--config", &path.to_string_lossy()])
        .env("NOTIFY_SOCKET", &notify_path)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    old.signal(Signal::User2).await.unwrap();
    let mut buffer = [0u8; 256];
    let length = notify.recv(&mut buffer).expect("the successor notifies systemd");
    let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
    old.wait_for_stdout("handed over 3 sockets to pid", Duration::from_secs(30)).await.unwrap();
    let successor =
        successor_in(&old.stdout_lines()).unwrap_or_else(|| panic!("no successor in {:?}", old.stdout_lines()));
    assert_eq!(message, format!("MAINPID={}\nREADY=1\n", successor.pid()));
    let finished = old.wait(Duration::from_secs(15)).await.unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(addresses(server, "www.lab.example.").await, ["10.0.0.1"], "the successor serves");
    successor.terminate(PATIENCE).await.unwrap();
}

/// systemd's own launcher, as a `.socket` unit would start the service.
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

#[tokio::test]
async fn sockets_from_systemd_socket_activation_are_served_and_keep_what_was_queued() {
    assert!(
        Path::new(SOCKET_ACTIVATE).exists(),
        "{SOCKET_ACTIVATE} is missing: install systemd (Debian: apt-get install systemd) to run this test"
    );
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    let port = free_port();
    let path = dir.write("forward.toml", config(port, &upstream));
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // systemd-socket-activate binds the UDP socket, waits for the first
    // datagram, then execs the forwarder with LISTEN_FDS=1 and LISTEN_PID
    // (so the process the harness started becomes the forwarder).
    let activator = Binary::new(SOCKET_ACTIVATE)
        .args(["--datagram", "--listen", &server.to_string(), "--"])
        .arg(env!("CARGO_BIN_EXE_signpost-forward"))
        .args(["--config", &path.to_string_lossy()])
        .env("RUST_LOG", "info")
        .ready_when(|line| line == "ready");
    let starting = tokio::spawn(async move { activator.start().await });
    // Once the launcher holds the port (a bind of our own is refused), a
    // query sent before the forwarder runs waits in the socket's queue.
    tokio::time::timeout(PATIENCE, async {
        while std::net::UdpSocket::bind(server).is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("systemd-socket-activate binds the port");
    let first = Query::new("www.lab.example", RecordType::A).id(7).to_bytes();
    let response = udp_exchange(server, &first, Duration::from_secs(20)).await.expect("the queued query is answered");
    assert_eq!(signpost_testkit::answers(&response), ["www.lab.example. 60 IN A 10.0.0.1"]);
    let activator = starting.await.unwrap().unwrap();
    let lines = activator.stdout_lines();
    assert!(lines.iter().any(|line| line == "inherited 1 sockets from systemd (LISTEN_FDS)"), "{lines:?}");
    assert!(lines.iter().any(|line| *line == format!("listening on udp {server}")), "{lines:?}");
    assert_eq!(addresses(server, "q.other.example.").await, ["192.0.2.1"], "two workers share the one socket");
    assert!(stop(activator).await);
}
