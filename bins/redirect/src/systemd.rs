//! `signpost-redirect systemd-resolved`: route only the redirected domains
//! to Signpost with resolvectl, or undo it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, ExitCode};

use signpost_redirect::RedirectSettings;

/// Where the kernel's IPv4 routing table is.
const ROUTE_TABLE: &str = "/proc/net/route";

pub(crate) fn run(settings: &RedirectSettings, interface: Option<&str>, revert: bool, dry_run: bool) -> ExitCode {
    let interface = match interface {
        Some(interface) => interface.to_owned(),
        None => match std::fs::read_to_string(ROUTE_TABLE).ok().and_then(|table| default_route_interface(&table)) {
            Some(interface) => interface,
            None => {
                eprintln!(
                    "error: no default route found in {ROUTE_TABLE}; name the link with --interface IFACE \
                     (see `resolvectl status`)"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let commands = match commands(settings, &interface, revert) {
        Ok(commands) => commands,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if dry_run {
        for command in &commands {
            println!("{}", command.join(" "));
        }
        return ExitCode::SUCCESS;
    }
    for command in &commands {
        if let Err(error) = execute(command) {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        println!("ran: {}", command.join(" "));
    }
    if revert {
        println!(
            "Reverted the DNS settings of {interface}. If NetworkManager manages it, `nmcli device reapply {interface}` \
             restores its own settings."
        );
    } else {
        println!(
            "systemd-resolved now sends the redirected domains on {interface} to Signpost. Check with \
             `resolvectl query s3.amazonaws.com` or `signpost-redirect check`; undo with \
             `signpost-redirect systemd-resolved --revert --interface {interface}`."
        );
    }
    ExitCode::SUCCESS
}

/// The resolvectl command lines to run, in order.
pub(crate) fn commands(settings: &RedirectSettings, interface: &str, revert: bool) -> Result<Vec<Vec<String>>, String> {
    if revert {
        return Ok(vec![vec!["resolvectl".into(), "revert".into(), interface.into()]]);
    }
    let Some(&address) = settings.bind_addresses().and_then(<[IpAddr]>::first) else {
        return Err("DNS is disabled (DNS_ADDRESS=0): there is no Signpost to route to".into());
    };
    // A wildcard listener is reachable on loopback.
    let address = match address {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let server = if settings.port == 53 {
        address.to_string()
    } else {
        // resolvectl takes ADDRESS:PORT (systemd 246 and later).
        SocketAddr::new(address, settings.port).to_string()
    };
    let domains = settings.domain_names().map_err(|error| error.to_string())?;
    let mut domain = vec!["resolvectl".to_owned(), "domain".to_owned(), interface.to_owned()];
    domain.extend(domains.iter().map(|name| format!("~{}", name.to_relative_string())));
    Ok(vec![vec!["resolvectl".into(), "dns".into(), interface.into(), server], domain])
}

/// Run one command; explain the usual failures.
fn execute(command: &[String]) -> Result<(), String> {
    let Some((program, arguments)) = command.split_first() else { return Ok(()) };
    let output = match Command::new(program).args(arguments).output() {
        Ok(output) => output,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{program} not found: this needs systemd-resolved (the systemd-resolved package). Without it, \
                 point /etc/resolv.conf at Signpost instead (docs/redirect.md)"
            ));
        }
        Err(error) => return Err(format!("cannot run {program}: {error}")),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let lower = stderr.to_ascii_lowercase();
    let denied = ["access denied", "permission denied", "interactive authentication required", "not authorized"];
    if denied.iter().any(|phrase| lower.contains(phrase)) {
        return Err(format!(
            "permission denied: changing systemd-resolved's settings needs root (or polkit's consent); run it with \
             sudo: `sudo signpost-redirect systemd-resolved ...`\n  {} said: {stderr}",
            command.join(" ")
        ));
    }
    if lower.contains("no such device") || lower.contains("failed to resolve interface") {
        let link = command.get(2).map_or("", String::as_str);
        return Err(format!(
            "there is no link {link:?}: name one that exists (`ip link`, `resolvectl status`); a Docker network's \
             bridge is docker0 or br- and the first 12 characters of the network id (`docker network inspect`)\n  \
             {} said: {stderr}",
            command.join(" ")
        ));
    }
    Err(format!("`{}` failed ({}): {stderr}", command.join(" "), output.status))
}

/// The interface of the default route (destination 0.0.0.0/0, lowest
/// metric) in a /proc/net/route table.
pub(crate) fn default_route_interface(table: &str) -> Option<String> {
    let mut best: Option<(u64, &str)> = None;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(&interface), Some(&destination), Some(&flags), Some(&metric), Some(&mask)) =
            (fields.first(), fields.get(1), fields.get(3), fields.get(6), fields.get(7))
        else {
            continue;
        };
        // RTF_UP is 0x1.
        let up = u32::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 != 0);
        if destination != "00000000" || mask != "00000000" || !up {
            continue;
        }
        let metric = metric.parse::<u64>().unwrap_or(u64::MAX);
        if best.is_none_or(|(lowest, _)| metric < lowest) {
            best = Some((metric, interface));
        }
    }
    best.map(|(_, interface)| interface.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t100\t000000FF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        assert_eq!(default_route_interface(TABLE).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn commands_name_the_port_when_it_is_not_53() {
        let mut settings = RedirectSettings::default();
        let lines: Vec<String> =
            commands(&settings, "eth0", false).expect("commands").iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "resolvectl dns eth0 127.0.0.1",
                "resolvectl domain eth0 ~amazonaws.com ~aws.amazon.com ~cloudfront.net ~localhost.localstack.cloud",
            ]
        );
        settings.set("DNS_PORT", "5353").expect("port");
        settings.set("DNS_ADDRESS", "0.0.0.0").expect("address");
        assert_eq!(
            commands(&settings, "eth0", false).expect("commands")[0].join(" "),
            "resolvectl dns eth0 127.0.0.1:5353"
        );
        assert_eq!(commands(&settings, "eth0", true).expect("commands")[0].join(" "), "resolvectl revert eth0");
        settings.set("DNS_ADDRESS", "0").expect("disabled");
        assert!(commands(&settings, "eth0", false).is_err());
    }
}
