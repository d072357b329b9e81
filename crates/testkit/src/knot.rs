//! Knot DNS as an authoritative peer on loopback, serving zone files a test
//! provides (pre-signed zones for DNSSEC tests: Knot's own signing is off,
//! so what the files hold is what it serves, broken signatures included).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use signpost_wire::RecordType;

use crate::{Error, TempDir, query};

/// How long [`Knot::start`] waits for the first answer.
const STARTUP: Duration = Duration::from_secs(15);

/// A running `knotd`, killed when dropped.
#[derive(Debug)]
pub struct Knot {
    child: Child,
    address: SocketAddr,
    _dir: TempDir,
}

impl Knot {
    /// Start `knotd` on a free 127.0.0.1 port serving `zones` (zone name,
    /// file name in `zone_dir`). It is ready when it answers the first
    /// zone's SOA. Fails when knotd is not installed (`apt-get install knot`).
    pub fn start(zone_dir: &Path, zones: &[(&str, &str)]) -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..crate::START_TRIES {
            match Self::try_start(zone_dir, zones) {
                Ok(knot) => return Ok(knot),
                Err(error @ Error::Spawn { .. }) => return Err(error),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(Error::Timeout { what: "knotd".to_owned(), waited: STARTUP, seen: String::new() }))
    }

    /// Start `knotd` serving every `NAME.zone.signed` file in `zone_dir` as
    /// zone `NAME.` (`root.zone.signed` as the root), as
    /// crates/dnssec/tests/zones/make.sh writes them.
    pub fn serve_signed_zones(zone_dir: &Path) -> Result<Self, Error> {
        let entries =
            std::fs::read_dir(zone_dir).map_err(|source| Error::File { path: zone_dir.to_path_buf(), source })?;
        let mut zones: Vec<(String, String)> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|file| {
                let zone = file.strip_suffix(".zone.signed")?;
                let zone = if zone == "root" { ".".to_owned() } else { format!("{zone}.") };
                Some((zone, file))
            })
            .collect();
        // The root first: readiness is checked on the first zone.
        zones.sort_by_key(|(zone, _)| zone.len());
        let zones: Vec<(&str, &str)> = zones.iter().map(|(zone, file)| (zone.as_str(), file.as_str())).collect();
        Self::start(zone_dir, &zones)
    }

    fn try_start(zone_dir: &Path, zones: &[(&str, &str)]) -> Result<Self, Error> {
        let dir = TempDir::try_new()?;
        let port = free_port()?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut config = format!(
            "server:\n    listen: {address}\n    rundir: {run}\nlog:\n  - target: stderr\n    any: warning\n\
             database:\n    storage: {run}\ntemplate:\n  - id: default\n    storage: {zones}\n    zonefile-sync: -1\n\
             \x20   journal-content: none\n    semantic-checks: off\nzone:\n",
            address = format_args!("{}@{}", address.ip(), address.port()),
            run = dir.path().display(),
            zones = zone_dir.display(),
        );
        for (zone, file) in zones {
            let _ = write!(config, "  - domain: \"{zone}\"\n    file: \"{file}\"\n");
        }
        let config_path = dir.try_write("knot.conf", config)?;
        let log = dir.join("knot.log");
        let log_file = std::fs::File::create(&log).map_err(|source| Error::File { path: log.clone(), source })?;
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|source| Error::Spawn { program: PathBuf::from("knotd"), source })?;
        let mut knot = Self { child, address, _dir: dir };
        let first = zones.first().map_or(".", |(zone, _)| zone);
        let probe = query(first, RecordType::SOA);
        let started = Instant::now();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Bind {
            transport: "UDP",
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        })?;
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buffer = [0u8; 4096];
        while started.elapsed() < STARTUP {
            if let Ok(Some(_)) = knot.child.try_wait() {
                break;
            }
            if socket.send_to(&probe, address).is_ok() && socket.recv_from(&mut buffer).is_ok() {
                return Ok(knot);
            }
        }
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = knot.child.kill();
        Err(Error::Timeout { what: "knotd to answer".to_owned(), waited: started.elapsed(), seen })
    }

    /// Knot serving the signed test hierarchy of [`signed_test_zones`].
    ///
    /// # Panics
    ///
    /// When knotd does not start (it is the Debian package `knot`).
    pub fn signed_test_hierarchy() -> Self {
        Self::serve_signed_zones(&signed_test_zones()).unwrap_or_else(|error| panic!("{}", must_run(&error)))
    }

    /// [`Knot::signed_test_hierarchy`] for async tests: starting waits for
    /// knotd's first answer, so it runs on a blocking thread.
    ///
    /// # Panics
    ///
    /// When knotd does not start (it is the Debian package `knot`).
    pub async fn start_signed_test_hierarchy() -> Self {
        let dir = signed_test_zones();
        match tokio::task::spawn_blocking(move || Self::serve_signed_zones(&dir)).await {
            Ok(Ok(knot)) => knot,
            Ok(Err(error)) => panic!("{}", must_run(&error)),
            Err(error) => panic!("starting knotd: {error}"),
        }
    }

    /// Where it listens, UDP and TCP.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// crates/dnssec/tests/zones of this repository: the signed test hierarchy
/// that its make.sh writes (`NAME.zone.signed`, served by
/// [`Knot::signed_test_hierarchy`]) and the root's key in `anchor.key`.
pub fn signed_test_zones() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dnssec/tests/zones")
}

fn must_run(error: &Error) -> String {
    format!("knotd (Debian package knot) must run: {error}")
}

/// A 127.0.0.1 port free for both UDP and TCP a moment ago.
fn free_port() -> Result<u16, Error> {
    for _ in 0..crate::START_TRIES {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let udp = UdpSocket::bind(any).map_err(|source| Error::Bind { transport: "UDP", address: any, source })?;
        let port = udp.local_addr().map_err(|source| Error::Bind { transport: "UDP", address: any, source })?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::NoSharedPort { ip: Ipv4Addr::LOCALHOST.into(), tries: crate::START_TRIES })
}
