//! Forwarding round trip through signpost-upstream to an in-process upstream on loopback.
//!
//! One criterion group, `upstream_round_trip`: a query for `www.example.test A`
//! sent with `Group::resolve` to a responder in the same process that answers
//! with one A record, over UDP (four shared sockets per server, answers
//! matched by ID in one receive loop), TCP (one pipelined connection), and
//! DoH (HTTP/2 over TLS 1.3, POST). The `x64` entries run 64 queries at once
//! and report throughput per query.
//!
//! Run with `cargo bench -p signpost-benches --bench upstream`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use signpost_upstream::{Group, GroupConfig, ServerConfig, TlsOptions, Upstreams};
use signpost_wire::{Class, Message, MessageBuilder, NameBuf, RData, RecordType, Section};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// The answer to `query`: its question and `A 192.0.2.1`.
fn answer(query: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(128);
    let Ok(parsed) = Message::parse(query) else { return buffer };
    let Ok(mut builder) = MessageBuilder::response_to(&mut buffer, &parsed) else { return Vec::new() };
    if let Ok(Some(question)) = parsed.first_question() {
        let _ = builder.push(Section::Answer, &question.name(), Class::IN, 60, &RData::A([192, 0, 2, 1].into()));
    }
    let _ = builder.finish();
    buffer
}

async fn udp_responder() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let address = socket.local_addr().expect("address");
    tokio::spawn(async move {
        let mut buffer = vec![0; 65535];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            let _ = socket.send_to(&answer(&buffer[..len]), peer).await;
        }
    });
    address
}

async fn tcp_responder() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind TCP");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let mut query = vec![0; 65535];
                while let Ok(len) = reader.read_u16().await {
                    let len = usize::from(len);
                    if reader.read_exact(&mut query[..len]).await.is_err() {
                        return;
                    }
                    let response = answer(&query[..len]);
                    let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&response);
                    if writer.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A DoH responder with a self-signed certificate for dns.test; returns its address and the certificate's PEM.
async fn doh_responder() -> (SocketAddr, String) {
    let key = KeyPair::generate().expect("key");
    let certificate =
        CertificateParams::new(vec!["dns.test".to_string()]).expect("params").self_signed(&key).expect("cert");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind DoH");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let response = Response::builder()
                        .header("content-type", "application/dns-message")
                        .body(Full::new(Bytes::from(answer(&body))))
                        .unwrap_or_default();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, certificate.pem())
}

fn group(upstreams: &Upstreams, name: &str) -> Group {
    upstreams.group(name).expect("group").clone()
}

fn upstream_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (udp, tcp, (doh, pem)) =
        runtime.block_on(async { (udp_responder().await, tcp_responder().await, doh_responder().await) });
    let ca_file = std::env::temp_dir().join(format!("signpost-bench-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, pem).expect("write CA");
    let tls = TlsOptions { ca_file: Some(ca_file.clone()), ignore_system_roots: true, fips: false };
    let config = |name: &str, server: ServerConfig| {
        let mut group = GroupConfig::new(name, vec![server]);
        group.tls = tls.clone();
        group
    };
    let upstreams = Upstreams::new(vec![
        config("udp", ServerConfig::udp(udp)),
        config("tcp", ServerConfig::tcp(tcp)),
        config("doh", ServerConfig::https(doh, "dns.test")),
    ])
    .expect("upstreams");
    let name: NameBuf = "www.example.test".parse().expect("name");
    let query = signpost_upstream::testing::query(&name, RecordType::A, Some(1232));

    let mut bench = c.benchmark_group("upstream_round_trip");
    bench.measurement_time(Duration::from_secs(4)).sample_size(50);
    for transport in ["udp", "tcp", "doh"] {
        let group = group(&upstreams, transport);
        // Check once, and open connections, before timing.
        let resolved = runtime.block_on(group.resolve(&query)).expect("answer");
        assert_eq!(Message::parse(&resolved.response).expect("parses").header().ancount, 1);

        bench.throughput(Throughput::Elements(1));
        bench.bench_function(transport, |b| {
            b.iter(|| black_box(runtime.block_on(group.resolve(black_box(&query))).expect("answer")));
        });
        bench.throughput(Throughput::Elements(64));
        bench.bench_function(format!("{transport}_x64"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..64)
                        .map(|_| {
                            let group = group.clone();
                            let query = query.clone();
                            tokio::spawn(async move { group.resolve(&query).await.map(|r| r.response.len()) })
                        })
                        .collect();
                    for task in tasks {
                        black_box(task.await.expect("task").expect("answer"));
                    }
                });
            });
        });
    }
    bench.finish();
    let _ = std::fs::remove_file(ca_file);
}

criterion_group!(benches, upstream_round_trip);
criterion_main!(benches);
