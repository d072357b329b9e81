//! `/health` and `/ready` as CoreDNS serves them, over HTTP.

use std::time::Duration;

use signpost_server::probes::LAME_DUCK;
use signpost_server::{HealthConfig, Probes, Readiness, ReadyConfig};
use std::sync::Arc;

use signpost_testkit::{FakeUpstream, closed_udp_port, eventually, http_get};
use signpost_upstream::{GroupConfig, ServerConfig, Upstreams};

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn ready_waits_for_every_check_and_fails_in_the_lame_duck_while_health_answers() {
    let readiness = Readiness::new();
    readiness.require("listeners");
    readiness.require("config");
    let health = HealthConfig { address: loopback(), lame_duck_ms: 600 };
    let ready = ReadyConfig::new(loopback());
    let probes = Probes::start(Some(&health), Some(&ready), readiness.clone()).await.unwrap();
    let (health, ready) = (probes.health_addr().unwrap(), probes.ready_addr().unwrap());
    assert_ne!(health, ready, "two addresses, two listeners");

    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())));
    assert_eq!(http_get(ready, "/ready").await, Some((503, "config\nlisteners".into())));
    readiness.mark_ready("config");
    assert_eq!(http_get(ready, "/ready").await, Some((503, "listeners".into())));
    readiness.mark_ready("listeners");
    assert_eq!(http_get(ready, "/ready").await, Some((200, "OK".into())));
    // Each listener serves its own route only, as CoreDNS's plugins do.
    assert_eq!(http_get(health, "/ready").await.map(|(status, _)| status), Some(404));
    assert_eq!(http_get(ready, "/health").await.map(|(status, _)| status), Some(404));

    let started = tokio::time::Instant::now();
    let lame_duck = tokio::spawn(async move {
        probes.lame_duck().await;
        probes
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(http_get(ready, "/ready").await, Some((503, LAME_DUCK.into())), "readiness fails at once");
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())), "liveness goes on");
    let probes = lame_duck.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600), "the lame duck lasted {:?}", started.elapsed());
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())), "until the application stops it");
    probes.stop().await;
    assert_eq!(http_get(health, "/health").await, None, "stopped");
}

#[tokio::test]
async fn health_and_ready_may_share_one_address() {
    let socket = std::net::TcpListener::bind(loopback()).unwrap();
    let address = socket.local_addr().unwrap();
    drop(socket);
    let health = HealthConfig { address, lame_duck_ms: 0 };
    let ready = ReadyConfig::new(address);
    let probes = Probes::start(Some(&health), Some(&ready), Readiness::new()).await.unwrap();
    assert_eq!(probes.health_addr(), Some(address));
    assert_eq!(probes.ready_addr(), Some(address));
    assert_eq!(http_get(address, "/health").await, Some((200, "OK".into())));
    assert_eq!(http_get(address, "/ready").await, Some((200, "OK".into())));
    assert_eq!(http_get(address, "/metrics").await.map(|(status, _)| status), Some(404));
    let started = tokio::time::Instant::now();
    probes.lame_duck().await;
    assert!(started.elapsed() < Duration::from_millis(500), "no lame-duck period was configured");
    assert_eq!(http_get(address, "/ready").await.map(|(status, _)| status), Some(503));
    probes.stop().await;
}

#[tokio::test]
async fn without_probes_nothing_is_bound_and_the_lame_duck_is_immediate() {
    let probes = Probes::start(None, None, Readiness::new()).await.unwrap();
    assert_eq!((probes.health_addr(), probes.ready_addr()), (None, None));
    assert_eq!(probes.lame_duck_period(), Duration::ZERO);
    probes.lame_duck().await;
    assert!(probes.readiness().is_lame_duck());
    probes.stop().await;
}

/// `/ready`'s answer at `address`.
async fn ready_answer(address: std::net::SocketAddr) -> Option<(u16, String)> {
    http_get(address, "/ready").await
}

/// Wait up to 5 s for `/ready` at `address` to answer `status` and `body`;
/// a failure names `why` and shows the last answer.
async fn assert_ready_becomes(address: std::net::SocketAddr, status: u16, body: &str, why: &str) {
    let expected = Some((status, body.to_string()));
    assert!(
        eventually(Duration::from_secs(5), || async { ready_answer(address).await == expected }).await,
        "{why}: {:?}",
        ready_answer(address).await
    );
}

/// A fake upstream answering on UDP at `address`.
async fn fake_at(address: std::net::SocketAddr) -> FakeUpstream {
    FakeUpstream::builder().udp().bind(address).start().await.unwrap()
}

#[tokio::test]
async fn ready_waits_for_an_answering_upstream_in_every_group_and_fails_when_all_are_down() {
    // Group "first" answers from the start; "second"'s only server is stopped.
    let first = FakeUpstream::builder().udp().start().await.unwrap();
    let second_address = closed_udp_port();
    let group = |name: &str, server| {
        let mut group = GroupConfig::new(name, vec![ServerConfig::udp(server)]);
        group.per_try_timeout = Duration::from_millis(300);
        group
    };
    let upstreams =
        Arc::new(Upstreams::new(vec![group("first", first.address()), group("second", second_address)]).unwrap());
    let ready = ReadyConfig { upstream_interval_ms: 100, ..ReadyConfig::new(loopback()) };
    let mut probes = Probes::start(None, Some(&ready), Readiness::new()).await.unwrap();
    let address = probes.ready_addr().unwrap();
    let shared = upstreams.clone();
    probes.check_upstreams(move || shared.clone());
    let answer = ready_answer(address).await.unwrap();
    assert!(
        answer == (503, "upstreams".into()) || answer == (503, "upstreams:second".into()),
        "before the first round, then the group without an answer: {answer:?}"
    );
    assert_ready_becomes(address, 503, "upstreams:second", "the silent group named").await;
    assert!(first.was_asked("."), "health checks ask for . NS: {:?}", first.names());

    // The second group's server starts: ready.
    let second = fake_at(second_address).await;
    assert_ready_becomes(address, 200, "OK", "the second group's server answers").await;

    // Every upstream stops: not ready again, each group named.
    let first_address = first.address();
    drop(first);
    drop(second);
    assert_ready_becomes(address, 503, "upstreams:first\nupstreams:second", "every upstream stopped").await;
    // One comes back: its group passes, the other still fails.
    let _first = fake_at(first_address).await;
    assert_ready_becomes(address, 503, "upstreams:second", "the first group's server is back").await;
    probes.stop().await;
}

#[tokio::test]
async fn ready_ignores_upstreams_when_told_to() {
    let upstreams =
        Arc::new(Upstreams::new(vec![GroupConfig::new("silent", vec![ServerConfig::udp(closed_udp_port())])]).unwrap());
    let ready = ReadyConfig { require_upstream: false, ..ReadyConfig::new(loopback()) };
    let mut probes = Probes::start(None, Some(&ready), Readiness::new()).await.unwrap();
    probes.check_upstreams(move || upstreams.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_answer(probes.ready_addr().unwrap()).await, Some((200, "OK".into())));
    probes.stop().await;
}
