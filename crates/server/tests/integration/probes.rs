//! `/health` and `/ready` as CoreDNS serves them, over HTTP.

use std::time::Duration;

use signpost_server::probes::LAME_DUCK;
use signpost_server::{HealthConfig, Probes, Readiness, ReadyConfig};
use signpost_testkit::http_get;

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn ready_waits_for_every_check_and_fails_in_the_lame_duck_while_health_answers() {
    let readiness = Readiness::new();
    readiness.require("listeners");
    readiness.require("config");
    let health = HealthConfig { address: loopback(), lame_duck_ms: 600 };
    let ready = ReadyConfig { address: loopback() };
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
    let ready = ReadyConfig { address };
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
