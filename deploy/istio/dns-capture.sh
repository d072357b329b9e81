#!/bin/sh
# DNS capture as istio-iptables sets it up for istio-agent (ISTIO_META_DNS_CAPTURE):
# the workload's DNS queries to port 53 are redirected to the proxy on port 15053,
# except those of the proxy's own user and group (its upstream queries), and UDP DNS
# is split into two conntrack zones so the client's flow and the proxy's upstream flow,
# which can share a 5-tuple after the redirect, do not clash (istio's addDNSConntrackZones).
#
#   dns-capture.sh install [--resolv-conf FILE | --all] [--port 15053] [--proxy-uid 1337] [--proxy-gid 1337]
#   dns-capture.sh remove
#
# With --resolv-conf (default /etc/resolv.conf) only queries to its nameservers are captured
# (istio's default, so a local dnsmasq behind the proxy does not loop); --all captures every
# destination (ISTIO_META_DNS_CAPTURE with CAPTURE_ALL_DNS, the CNI case). Run it as root in
# the workload's network namespace (an init container, or `ip netns exec`). The chains are
# called SIGNPOST_DNS_* so that `remove` takes out exactly what `install` added.
set -eu

action="${1:-}"
[ $# -gt 0 ] && shift
resolv_conf=/etc/resolv.conf
capture_all=no
port=15053
uid=1337
gid=1337
while [ $# -gt 0 ]; do
  case "$1" in
    --resolv-conf) resolv_conf="$2"; shift 2 ;;
    --all) capture_all=yes; shift ;;
    --port) port="$2"; shift 2 ;;
    --proxy-uid) uid="$2"; shift 2 ;;
    --proxy-gid) gid="$2"; shift 2 ;;
    *) echo "dns-capture.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Nameservers of one family from resolv.conf (glibc reads the first three).
nameservers() { # FAMILY (4 or 6)
  awk -v family="$1" '$1 == "nameserver" && count < 3 {
    count++
    if ((index($2, ":") > 0) == (family == 6)) print $2
  }' "$resolv_conf"
}

remove_family() { # IPTABLES
  ipt="$1"
  for protocol in udp tcp; do
    while "$ipt" -t nat -D OUTPUT -p "$protocol" --dport 53 -j SIGNPOST_DNS_OUTPUT 2>/dev/null; do :; done
  done
  while "$ipt" -t raw -D OUTPUT -p udp -j SIGNPOST_DNS_RAW_OUTPUT 2>/dev/null; do :; done
  while "$ipt" -t raw -D PREROUTING -p udp --sport 53 -j SIGNPOST_DNS_RAW_INBOUND 2>/dev/null; do :; done
  for chain in nat:SIGNPOST_DNS_OUTPUT nat:SIGNPOST_DNS_REDIRECT raw:SIGNPOST_DNS_RAW_OUTPUT raw:SIGNPOST_DNS_RAW_INBOUND; do
    "$ipt" -t "${chain%%:*}" -F "${chain#*:}" 2>/dev/null || true
    "$ipt" -t "${chain%%:*}" -X "${chain#*:}" 2>/dev/null || true
  done
}

install_family() { # IPTABLES FAMILY PREFIX
  ipt="$1"
  servers="$(nameservers "$2")"
  if [ "$capture_all" = no ] && [ -z "$servers" ]; then
    return 0
  fi
  "$ipt" -t nat -N SIGNPOST_DNS_OUTPUT
  "$ipt" -t nat -N SIGNPOST_DNS_REDIRECT
  "$ipt" -t raw -N SIGNPOST_DNS_RAW_OUTPUT
  "$ipt" -t raw -N SIGNPOST_DNS_RAW_INBOUND
  # The proxy's own queries go out (istio: ISTIO_OUTPUT's --uid-owner/--gid-owner RETURN).
  "$ipt" -t nat -A SIGNPOST_DNS_OUTPUT -m owner --uid-owner "$uid" -j RETURN
  "$ipt" -t nat -A SIGNPOST_DNS_OUTPUT -m owner --gid-owner "$gid" -j RETURN
  "$ipt" -t nat -A SIGNPOST_DNS_OUTPUT -j SIGNPOST_DNS_REDIRECT
  # Conntrack zones: the proxy's upstream queries and its answers to clients.
  "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --dport 53 -m owner --uid-owner "$uid" -j CT --zone 1
  "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --sport "$port" -m owner --uid-owner "$uid" -j CT --zone 2
  "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --dport 53 -m owner --gid-owner "$gid" -j CT --zone 1
  "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --sport "$port" -m owner --gid-owner "$gid" -j CT --zone 2
  if [ "$capture_all" = yes ]; then
    for protocol in udp tcp; do
      "$ipt" -t nat -A SIGNPOST_DNS_REDIRECT -p "$protocol" --dport 53 -j REDIRECT --to-ports "$port"
    done
    # Clients' queries in zone 2, resolvers' answers in zone 1.
    "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --dport 53 -j CT --zone 2
    "$ipt" -t raw -A SIGNPOST_DNS_RAW_INBOUND -p udp --sport 53 -j CT --zone 1
  else
    for server in $servers; do
      for protocol in udp tcp; do
        "$ipt" -t nat -A SIGNPOST_DNS_REDIRECT -p "$protocol" --dport 53 -d "$server" -j REDIRECT --to-ports "$port"
      done
      "$ipt" -t raw -A SIGNPOST_DNS_RAW_OUTPUT -p udp --dport 53 -d "$server" -j CT --zone 2
      "$ipt" -t raw -A SIGNPOST_DNS_RAW_INBOUND -p udp --sport 53 -s "$server" -j CT --zone 1
    done
  fi
  for protocol in udp tcp; do
    "$ipt" -t nat -A OUTPUT -p "$protocol" --dport 53 -j SIGNPOST_DNS_OUTPUT
  done
  "$ipt" -t raw -A OUTPUT -p udp -j SIGNPOST_DNS_RAW_OUTPUT
  "$ipt" -t raw -A PREROUTING -p udp --sport 53 -j SIGNPOST_DNS_RAW_INBOUND
}

case "$action" in
  install)
    remove_family iptables
    install_family iptables 4
    if command -v ip6tables >/dev/null 2>&1; then
      remove_family ip6tables
      install_family ip6tables 6
    fi
    ;;
  remove)
    remove_family iptables
    if command -v ip6tables >/dev/null 2>&1; then remove_family ip6tables; fi
    ;;
  *)
    echo "usage: dns-capture.sh install [--resolv-conf FILE | --all] [--port 15053] [--proxy-uid UID] [--proxy-gid GID] | remove" >&2
    exit 2
    ;;
esac
