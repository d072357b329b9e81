//! Listeners added and removed while the server runs, and a server whose
//! last handle is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use signpost_server::{AdminConfig, Error, ListenerConfig, Transport};
use signpost_wire::RecordType;

use crate::support::*;

fn listener(transport: Transport, id: &str) -> ListenerConfig {
    let mut listener = ListenerConfig::new(transport, "127.0.0.1:0".parse().unwrap());
    listener.id = Some(id.into());
    listener.workers = Some(1);
    listener
}

/// Answered over UDP within a second.
async fn answers_udp(address: SocketAddr) -> bool {
    let bytes = query("www.local.test", RecordType::A);
    udp_exchange(address, &bytes, Duration::from_secs(1)).await.is_some_and(|response| answers(&response).len() == 1)
}

#[tokio::test]
async fn listeners_come_and_go_while_the_others_keep_answering() {
    let server = signpost_server::Server::builder()
        .listener(listener(Transport::Udp, "first"))
        .rules(rules(LOCAL_REDIRECT, &[]))
        .start()
        .await
        .unwrap();
    let first = udp(&server);
    // A client asks the first listener all along, one query at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, missed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, answered, missed) = (stop.clone(), answered.clone(), missed.clone());
        tokio::spawn(async move {
            for _ in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let counter = if answers_udp(first).await { &answered } else { &missed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let added = server.add_listener(listener(Transport::Tcp, "second")).await.unwrap();
    assert_eq!(added.id, "second");
    assert_eq!(added.transport, Transport::Tcp);
    assert_ne!(added.address.port(), 0);
    let response = tcp_answer(added.address, &query("www.local.test", RecordType::A)).await;
    assert_eq!(answers(&response), ["www.local.test. 60 IN A 127.0.0.1"]);
    let third = server.add_listener(listener(Transport::Udp, "third")).await.unwrap();
    assert!(answers_udp(third.address).await);
    let ids: Vec<String> = server.listeners().into_iter().map(|listener| listener.id).collect();
    assert_eq!(ids, ["first", "second", "third"]);
    assert_eq!(server.udp_addrs(), [first, third.address]);

    // Ids are unique; groups must exist; nothing is added on error.
    let error = server.add_listener(listener(Transport::Udp, "second")).await.unwrap_err();
    assert!(matches!(&error, Error::DuplicateListener { id } if id == "second"), "{error}");
    let mut grouped = listener(Transport::Udp, "fourth");
    grouped.limit_group = Some("nobody".into());
    assert!(matches!(server.add_listener(grouped).await, Err(Error::UnknownLimitGroup { .. })));
    assert_eq!(server.listeners().len(), 3);

    let removed = server.remove_listener("third").await.unwrap();
    assert_eq!(removed, third);
    assert!(!answers_udp(third.address).await, "a removed listener answers no more");
    assert!(matches!(server.remove_listener("third").await, Err(Error::UnknownListener { .. })));
    assert_eq!(answers(&tcp_answer(added.address, &query("www.local.test", RecordType::A)).await).len(), 1);

    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    assert!(answered.load(Ordering::SeqCst) > 0);
    assert_eq!(missed.load(Ordering::SeqCst), 0, "the first listener answered every query throughout");
    assert!(answers_udp(first).await);
    server.shutdown().await;
}

/// Dropping the last handle stops the server, even with an admin listener
/// running, so a test that panics does not leak its server.
#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let server = builder()
        .admin(AdminConfig { address: "127.0.0.1:0".parse().unwrap() })
        .rules(rules(LOCAL_REDIRECT, &[]))
        .start()
        .await
        .unwrap();
    let address = udp(&server);
    assert!(answers_udp(address).await);
    let clone = server.clone();
    drop(server);
    assert!(answers_udp(address).await, "a clone keeps it running");
    drop(clone);
    let mut stopped = false;
    for _ in 0..20 {
        if !answers_udp(address).await {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "still answering after the last handle was dropped");
}
