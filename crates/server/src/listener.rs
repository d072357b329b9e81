//! Binding listeners and serving them: each runs as tasks of its own with
//! a stop token of its own, so one can be added or removed while the
//! others keep answering.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use signpost_rules::Transport;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{DEFAULT_RECEIVE_BUFFER, ListenerConfig, default_allow_list};
use crate::kernel::UdpSockets;
use crate::limits::RateLimiter;
use crate::pipeline::{ListenerContext, Pipeline};
use crate::tcp::StreamLimits;
use crate::{Error, doh, tcp, tls, udp};

/// How many ports a port-0 UDP and TCP pair tries before giving up.
const PAIR_ATTEMPTS: usize = 64;

/// A listener as bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundListener {
    /// Its id: as configured, else `transport@address:port` with the port
    /// actually bound.
    pub id: String,
    /// Its transport.
    pub transport: Transport,
    /// The address actually bound (the real port when 0 was asked for).
    pub address: SocketAddr,
}

/// The sockets of one listener, bound but not yet served.
pub(crate) enum Sockets {
    /// A UDP listener's sockets, one per worker.
    Udp(Vec<UdpSocket>),
    /// A TCP, DoT or DoH listening socket.
    Stream(std::net::TcpListener),
}

impl Sockets {
    fn local_addr(&self) -> Result<SocketAddr, Error> {
        match self {
            Self::Udp(sockets) => udp::local_addr(sockets),
            Self::Stream(socket) => {
                socket.local_addr().map_err(|source| Error::Io { what: "reading a bound address", source })
            }
        }
    }
}

/// What every listener of a server shares.
pub(crate) struct Runtime {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) limits: StreamLimits,
    /// The rate-limit groups listeners may join, by name.
    pub(crate) groups: HashMap<String, RateLimiter>,
    /// Cancelled at shutdown; each listener's token is a child of it.
    pub(crate) stop: CancellationToken,
}

/// A listener being served.
pub(crate) struct Running {
    pub(crate) bound: BoundListener,
    pub(crate) config: ListenerConfig,
    pub(crate) context: Arc<ListenerContext>,
    /// A UDP listener's sockets as the kernel knows them (for the metrics).
    pub(crate) udp_sockets: Option<UdpSockets>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop serving, and wait (a moment) for its tasks to end.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

fn is_udp(listener: &ListenerConfig) -> bool {
    listener.transport == Transport::Udp
}

/// For each listener, the later port-0 listener of the other kind (UDP or
/// stream) on the same address that it shares a port with: a test asking
/// for UDP and TCP on port 0 gets both on one port.
fn port_zero_pairs(listeners: &[ListenerConfig]) -> Vec<Option<usize>> {
    let mut pairs = vec![None; listeners.len()];
    let mut taken = vec![false; listeners.len()];
    for (index, listener) in listeners.iter().enumerate() {
        if listener.port != 0 || taken[index] {
            continue;
        }
        let partner = listeners.iter().enumerate().skip(index + 1).find(|(other_index, other)| {
            !taken[*other_index]
                && other.port == 0
                && other.address == listener.address
                && is_udp(other) != is_udp(listener)
        });
        if let Some((other_index, _)) = partner {
            taken[index] = true;
            taken[other_index] = true;
            pairs[index] = Some(other_index);
        }
    }
    pairs
}

/// Bind every listener's sockets, in order.
pub(crate) fn bind_all(listeners: &[ListenerConfig]) -> Result<Vec<Sockets>, Error> {
    let pairs = port_zero_pairs(listeners);
    let mut bound: Vec<Option<Sockets>> = listeners.iter().map(|_| None).collect();
    for (index, listener) in listeners.iter().enumerate() {
        if bound[index].is_some() {
            continue;
        }
        match pairs[index].and_then(|partner| Some((partner, listeners.get(partner)?))) {
            Some((partner, other)) => {
                let (udp, stream) = if is_udp(listener) { (listener, other) } else { (other, listener) };
                let (udp_sockets, stream_socket) =
                    bind_pair(udp, |address| tcp::bind(address, stream.transport.as_str()))?;
                let (mine, theirs) = if is_udp(listener) {
                    (Sockets::Udp(udp_sockets), Sockets::Stream(stream_socket))
                } else {
                    (Sockets::Stream(stream_socket), Sockets::Udp(udp_sockets))
                };
                bound[index] = Some(mine);
                bound[partner] = Some(theirs);
            }
            None => bound[index] = Some(bind_one(listener)?),
        }
    }
    Ok(bound.into_iter().flatten().collect())
}

fn udp_workers(listener: &ListenerConfig) -> usize {
    listener.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

fn receive_buffer(listener: &ListenerConfig) -> usize {
    listener.receive_buffer.unwrap_or(DEFAULT_RECEIVE_BUFFER)
}

/// Bind one listener's sockets.
pub(crate) fn bind_one(listener: &ListenerConfig) -> Result<Sockets, Error> {
    let address = listener.socket_address();
    Ok(match listener.transport {
        Transport::Udp => Sockets::Udp(udp::bind_sockets(address, udp_workers(listener), receive_buffer(listener))?),
        transport => Sockets::Stream(tcp::bind(address, transport.as_str())?),
    })
}

/// Bind a port-0 UDP listener, then a stream listener on the port the UDP
/// one was given; when that port is taken for TCP, both start again on a
/// new one (at most [`PAIR_ATTEMPTS`] times).
pub(crate) fn bind_pair(
    udp: &ListenerConfig,
    mut bind_stream: impl FnMut(SocketAddr) -> Result<std::net::TcpListener, Error>,
) -> Result<(Vec<UdpSocket>, std::net::TcpListener), Error> {
    // Ports found taken stay held until the end, so the kernel cannot
    // offer one of them again.
    let mut taken = Vec::new();
    loop {
        let sockets = udp::bind_sockets(udp.socket_address(), udp_workers(udp), receive_buffer(udp))?;
        match bind_stream(udp::local_addr(&sockets)?) {
            Ok(stream) => return Ok((sockets, stream)),
            Err(Error::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && taken.len() + 1 < PAIR_ATTEMPTS =>
            {
                taken.push(sockets);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Check what can be checked before binding: the rate-limit group exists,
/// TLS files go with the transport. Returns the listener's TLS acceptor,
/// read from its files on a blocking thread.
pub(crate) async fn prepare(
    listener: &ListenerConfig,
    groups: &HashMap<String, RateLimiter>,
) -> Result<Option<TlsAcceptor>, Error> {
    let id = listener.id_or_default();
    if let Some(group) = &listener.limit_group
        && !groups.contains_key(group)
    {
        return Err(Error::UnknownLimitGroup { listener: id, group: group.clone() });
    }
    let alpn: &'static [&'static [u8]] = match listener.transport {
        Transport::Udp | Transport::Tcp => return Ok(None),
        Transport::Dot => &[b"dot"],
        Transport::Doh => &[b"h2", b"http/1.1"],
    };
    let tls = match (&listener.tls_cert, &listener.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, key, fips, for_id) = (cert.clone(), key.clone(), listener.tls_fips, id.clone());
            let config = tokio::task::spawn_blocking(move || tls::server_config(&for_id, &cert, &key, alpn, fips))
                .await
                .map_err(|failed| Error::Io { what: "loading TLS files", source: std::io::Error::other(failed) })??;
            Some(TlsAcceptor::from(config))
        }
        (None, None) => None,
        _ => return Err(Error::Listener { listener: id, reason: "tls_cert and tls_key go together".into() }),
    };
    match (listener.transport, &tls) {
        (Transport::Dot, None) => {
            Err(Error::Listener { listener: id, reason: "DoT needs tls_cert and tls_key".into() })
        }
        (Transport::Doh, None) if !listener.plain_http => Err(Error::Listener {
            listener: id,
            reason: "DoH needs tls_cert and tls_key, or plain_http = true behind a TLS-terminating proxy".into(),
        }),
        _ => Ok(tls),
    }
}

/// Serve a listener on its bound sockets.
pub(crate) fn serve(
    runtime: &Runtime,
    listener: &ListenerConfig,
    sockets: Sockets,
    tls: Option<TlsAcceptor>,
) -> Result<Running, Error> {
    let local = sockets.local_addr()?;
    let id = listener.id.clone().unwrap_or_else(|| format!("{}@{local}", listener.transport));
    let group_limit = match &listener.limit_group {
        Some(group) => Some(
            runtime
                .groups
                .get(group)
                .cloned()
                .ok_or_else(|| Error::UnknownLimitGroup { listener: id.clone(), group: group.clone() })?,
        ),
        None => None,
    };
    let context = Arc::new(ListenerContext {
        id: Arc::from(id.as_str()),
        transport: listener.transport,
        allow: listener.allow.clone().unwrap_or_else(default_allow_list),
        max_qps: listener.max_qps.map(RateLimiter::single),
        group_limit,
        bound: (!listener.address.is_unspecified()).then_some(listener.address),
        client_rate_limit: listener.client_rate_limit,
    });
    let stop = runtime.stop.child_token();
    let pipeline = &runtime.pipeline;
    let mut udp_sockets = None;
    let tasks = match sockets {
        Sockets::Udp(sockets) => {
            let known = UdpSockets::of(&sockets);
            let asked = receive_buffer(listener);
            if let Some(granted) = known.receive_buffer.filter(|granted| *granted < asked) {
                tracing::warn!(
                    listener = %id,
                    asked,
                    granted,
                    "the kernel granted a smaller UDP receive buffer than asked; queries arriving in bursts \
                     may be dropped (signpost_udp_receive_drops_total): raise net.core.rmem_max or run with \
                     CAP_NET_ADMIN"
                );
            }
            udp_sockets = Some(known);
            udp::spawn_workers(sockets, context.clone(), pipeline.clone(), stop.clone())?
        }
        Sockets::Stream(socket) => {
            let socket = tcp::into_tokio(socket)?;
            let context = context.clone();
            let task = match listener.transport {
                Transport::Doh => tokio::spawn(doh::serve(
                    socket,
                    tls,
                    context,
                    pipeline.clone(),
                    listener.doh_path.clone(),
                    stop.clone(),
                    runtime.limits,
                )),
                _ => tokio::spawn(tcp::serve(socket, tls, context, pipeline.clone(), runtime.limits, stop.clone())),
            };
            vec![task]
        }
    };
    Ok(Running {
        bound: BoundListener { id, transport: listener.transport, address: local },
        config: listener.clone(),
        context,
        udp_sockets,
        stop,
        tasks,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// UDP on 127.0.0.1:0 with one worker.
    pub(crate) fn udp_listener() -> ListenerConfig {
        let mut listener = ListenerConfig::new(Transport::Udp, SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.workers = Some(1);
        listener
    }

    #[test]
    fn a_pair_whose_tcp_port_is_taken_moves_to_another_port() {
        let udp = udp_listener();
        let mut refused = Vec::new();
        let (sockets, stream) = bind_pair(&udp, |address| {
            if refused.len() < 3 {
                refused.push(address);
                return Err(Error::bind("tcp", address, std::io::ErrorKind::AddrInUse.into()));
            }
            tcp::bind(address, "tcp")
        })
        .unwrap();
        let port = udp::local_addr(&sockets).unwrap().port();
        assert_eq!(stream.local_addr().unwrap().port(), port);
        assert_eq!(refused.len(), 3);
        assert!(refused.iter().all(|address| address.port() != port), "{refused:?} then {port}");
        // Other errors are not retried.
        let error =
            bind_pair(&udp, |address| Err(Error::bind("tcp", address, std::io::ErrorKind::PermissionDenied.into())));
        assert!(matches!(error, Err(Error::Bind { .. })));
    }

    #[test]
    fn port_zero_listeners_pair_up_by_address() {
        let at = |transport, address: [u8; 4], port| ListenerConfig::new(transport, SocketAddr::from((address, port)));
        let listeners = [
            at(Transport::Tcp, [127, 0, 0, 1], 0),
            at(Transport::Dot, [127, 0, 0, 1], 0),
            at(Transport::Udp, [127, 0, 0, 2], 0),
            at(Transport::Udp, [127, 0, 0, 1], 0),
            at(Transport::Udp, [127, 0, 0, 1], 53),
            at(Transport::Doh, [127, 0, 0, 2], 0),
        ];
        assert_eq!(port_zero_pairs(&listeners), [Some(3), None, Some(5), None, None, None]);
    }
}
