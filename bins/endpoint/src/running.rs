//! A running emulator: start, list listeners, reload with the transition
//! checks, stop.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::compile::{Deployment, ListenerRole};
use crate::error::EndpointError;
use crate::model::EndpointConfig;
use crate::protocols::EndpointProtocol;
use crate::querylog::Route53Format;
use signpost_server::Transport;
use signpost_server::{Server, ServerHandle};

/// One bound listener and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointListener {
    /// The listener id.
    pub id: String,
    /// A VPC resolver or an inbound endpoint address.
    pub role: ListenerRole,
    /// The endpoint protocol served.
    pub protocol: EndpointProtocol,
    /// The transport.
    pub transport: Transport,
    /// The address bound (the real port when 0 was asked for).
    pub address: SocketAddr,
    /// For DoH, the URL clients use.
    pub url: Option<String>,
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Rules and upstreams were swapped; listeners kept serving.
    InPlace,
    /// Listeners, limits or logs changed: the server was stopped and started
    /// again with the new configuration.
    Restarted,
}

/// A running Route 53 Resolver emulator.
pub struct Endpoint {
    config: Arc<EndpointConfig>,
    deployment: Deployment,
    server: ServerHandle,
    /// The query-log format in force, told of rule changes made in place.
    log_format: Arc<Route53Format>,
}

/// Start the server of `deployment`. Listeners asked on port 0 that were
/// bound before (`previous`, same id and address) keep the port they had,
/// so a restart does not move them.
async fn start_server(
    deployment: &Deployment,
    transfers: Option<&Arc<signpost_server::transfer::ZoneTransfers>>,
    previous: &[(String, SocketAddr)],
) -> Result<(ServerHandle, Arc<Route53Format>), EndpointError> {
    let mut config = deployment.server.clone();
    for listener in &mut config.listeners {
        if listener.port != 0 {
            continue;
        }
        let id = listener.id_or_default();
        if let Some((_, bound)) =
            previous.iter().find(|(bound_id, bound)| *bound_id == id && bound.ip() == listener.address)
        {
            listener.port = bound.port();
        }
    }
    let log_format = Arc::new(Route53Format::new(deployment.log_account.clone(), &deployment.listeners));
    log_format.set_rules(deployment.rules.clone());
    let mut builder = Server::builder()
        .config(config)
        .state(deployment.state())
        .query_logs(deployment.query_logs.clone())
        .query_log_format(log_format.clone());
    if let Some(transfers) = transfers {
        builder = builder.query_handler(transfers.clone());
    }
    Ok((builder.start().await?, log_format))
}

impl Endpoint {
    /// Compile `config` and start serving it.
    pub async fn start(config: EndpointConfig) -> Result<Self, EndpointError> {
        Self::start_shared(Arc::new(config)).await
    }

    /// [`Endpoint::start`] with a configuration others hold too.
    pub async fn start_shared(config: Arc<EndpointConfig>) -> Result<Self, EndpointError> {
        let deployment = config.compile()?;
        let (server, log_format) = start_server(&deployment, config.runtime.transfers.as_ref(), &[]).await?;
        Ok(Self { config, deployment, server, log_format })
    }

    /// The server (metrics, reload, shutdown...).
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The configuration in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The compiled configuration in force.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Every listener as bound, VPC resolvers first.
    pub fn listeners(&self) -> Vec<EndpointListener> {
        self.server
            .listeners()
            .iter()
            .filter_map(|bound| {
                let planned = self.deployment.listener(&bound.id)?;
                let url = (bound.transport == Transport::Doh).then(|| {
                    let path = self.server_listener_path(&bound.id).unwrap_or_else(|| "/dns-query".to_string());
                    format!("https://{}{path}", bound.address)
                });
                Some(EndpointListener {
                    id: bound.id.clone(),
                    role: planned.role.clone(),
                    protocol: planned.protocol,
                    transport: bound.transport,
                    address: bound.address,
                    url,
                })
            })
            .collect()
    }

    fn server_listener_path(&self, id: &str) -> Option<String> {
        self.deployment
            .server
            .listeners
            .iter()
            .find(|listener| listener.id.as_deref() == Some(id))
            .map(|listener| listener.doh_path.clone())
    }

    /// The addresses of the listeners of `role` over `transport`.
    pub fn addresses(&self, role: &ListenerRole, transport: Transport) -> Vec<SocketAddr> {
        self.listeners()
            .into_iter()
            .filter(|listener| &listener.role == role && listener.transport == transport)
            .map(|listener| listener.address)
            .collect()
    }

    /// Move to `next`. The transition checks run first (an endpoint keeps
    /// its VPC; Do53 alone and DoH alone are two steps apart); any error
    /// leaves the running configuration untouched. When only zones, rules
    /// and targets changed, they are swapped in place; when listeners,
    /// limits or query logs changed, the server restarts on the new
    /// configuration (if that fails, the old one is started again).
    pub async fn reload(&mut self, next: EndpointConfig) -> Result<Reloaded, EndpointError> {
        self.reload_shared(Arc::new(next)).await
    }

    /// [`Endpoint::reload`] with a configuration others hold too.
    pub async fn reload_shared(&mut self, next: Arc<EndpointConfig>) -> Result<Reloaded, EndpointError> {
        self.config.check_transition(&next)?;
        let deployment = next.compile()?;
        let server_side = |deployment: &Deployment| {
            serde_json::to_string(&(&deployment.server, &deployment.query_logs, &deployment.log_account))
                .unwrap_or_default()
        };
        let same_server = server_side(&deployment) == server_side(&self.deployment);
        if same_server {
            self.server.reload(deployment.state());
            self.log_format.set_rules(deployment.rules.clone());
            self.config = next;
            self.deployment = deployment;
            return Ok(Reloaded::InPlace);
        }
        let previous: Vec<(String, SocketAddr)> =
            self.server.listeners().iter().map(|bound| (bound.id.clone(), bound.address)).collect();
        self.server.clone().shutdown().await;
        match start_server(&deployment, next.runtime.transfers.as_ref(), &previous).await {
            Ok((server, log_format)) => {
                self.server = server;
                self.log_format = log_format;
                self.config = next;
                self.deployment = deployment;
                Ok(Reloaded::Restarted)
            }
            Err(error) => {
                (self.server, self.log_format) =
                    start_server(&self.deployment, self.config.runtime.transfers.as_ref(), &previous).await?;
                Err(error)
            }
        }
    }

    /// Stop serving (queries in flight finish first).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
