#!/usr/bin/env bash
# The AWS API at scale: the same boto3 calls (VPCS VPCs with subnets and a
# security group each, one outbound endpoint, RULES FORWARD rules each
# associated with a VPC, one private zone per VPC, RECORDS records one call
# each) against signpost-endpoint writing durably to a state directory and
# against moto's server, both on loopback; then dnsperf against a VPC
# resolver of the endpoint, with the model in place. Writes
# benches/aws-api/results.md. Everything is on 127.0.0.1 and bounded.
#
#   benches/aws-api/run.sh                      # 100 VPCs, 1,000 rules, 10,000 records
#   VPCS=10 RULES=100 RECORDS=1000 benches/aws-api/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
VPCS="${VPCS:-100}"
RULES="${RULES:-1000}"
RECORDS="${RECORDS:-10000}"
VENV="${SIGNPOST_AWS_VENV:-${TMPDIR:-/tmp}/signpost-aws-venv}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/signpost-aws-bench.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check boto3 'moto[server]'
fi
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
cargo build -q --release -p signpost-endpoint

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# signpost-endpoint: durable state, quotas lifted (100 VPCs are over AWS's default of 5).
API_PORT="$(free_port)"
DNS_PORT="$(free_port)"
"$TARGET_DIR/release/signpost-endpoint" --api "127.0.0.1:$API_PORT" --state "$WORK/state" --no-quotas \
  --dns-port "$DNS_PORT" --doh-port 0 --recursive 127.0.0.1:9 >"$WORK/signpost.log" 2>&1 &
SIGNPOST_PID=$!
PIDS+=("$SIGNPOST_PID")
for _ in $(seq 1 100); do grep -q '^ready$' "$WORK/signpost.log" && break; sleep 0.1; done
echo "signpost-endpoint: $VPCS VPCs, $RULES rules, $RECORDS records"
"$VENV/bin/python" benches/aws-api/driver.py "http://127.0.0.1:$API_PORT" "$VPCS" "$RULES" "$RECORDS" >"$WORK/signpost.json"
cat "$WORK/signpost.json"

# DNS answers per busy core second afterwards: a record of the first VPC's zone, from that VPC.
DNSPERF=""
if command -v dnsperf >/dev/null; then
  for i in $(seq 0 99); do echo "host$((i * VPCS)).z0.corp.example A"; done >"$WORK/queries.txt"
  ticks() { awk '{print $14 + $15}' "/proc/$SIGNPOST_PID/stat"; }
  before="$(ticks)"
  dnsperf -s 127.100.0.2 -p "$DNS_PORT" -d "$WORK/queries.txt" -l 10 -c 4 -q 64 >"$WORK/dnsperf.txt" 2>&1 || true
  after="$(ticks)"
  qps="$(awk '/Queries per second/ {print $4}' "$WORK/dnsperf.txt")"
  answered="$(awk '/Queries completed/ {print $3}' "$WORK/dnsperf.txt")"
  busy="$(awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (a - b) / hz}')"
  DNSPERF="$qps q/s; $answered answered in 10 s using $busy CPU s ($(awk -v n="$answered" -v c="$busy" 'BEGIN {if (c > 0) printf "%.0f", n / c; else print "n/a"}') answers per busy core second)"
  echo "dnsperf: $DNSPERF"
fi
kill "$SIGNPOST_PID"

# moto's server, the same calls.
MOTO_PORT="$(free_port)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break; sleep 0.1; done
echo "moto_server $("$VENV/bin/python" -c 'import moto; print(moto.__version__)')"
"$VENV/bin/python" benches/aws-api/driver.py "http://127.0.0.1:$MOTO_PORT" "$VPCS" "$RULES" "$RECORDS" >"$WORK/moto.json"
cat "$WORK/moto.json"

"$VENV/bin/python" - "$WORK/signpost.json" "$WORK/moto.json" "$DNSPERF" "$VPCS" "$RULES" "$RECORDS" >benches/aws-api/results.md <<'PY'
import json, os, sys, time
signpost, moto = (json.load(open(path)) for path in sys.argv[1:3])
dnsperf, vpcs, rules, records = sys.argv[3:7]
load = open("/proc/loadavg").read().split()[:3]
print(f"# AWS API calls at scale ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
print(f"{vpcs} VPCs, {rules} rules, {records} records through boto3, one call at a time; machine: {os.cpu_count()} CPUs, load average {' '.join(load)} at the end.\n")
print("| operation | calls | signpost median ms | signpost p99 ms | moto median ms | moto p99 ms | moto / signpost (median) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, ours in signpost["operations"].items():
    theirs = moto["operations"].get(name, {})
    ratio = theirs.get("median_ms", 0) / ours["median_ms"] if ours["median_ms"] else 0
    print(f"| {name} | {ours['calls']} | {ours['median_ms']} | {ours['p99_ms']} | {theirs.get('median_ms', '—')} | {theirs.get('p99_ms', '—')} | {ratio:.1f}× |")
a, b = signpost["all"], moto["all"]
print(f"| all | {a['calls']} | {a['median_ms']} | {a['p99_ms']} | {b['median_ms']} | {b['p99_ms']} | {b['median_ms'] / a['median_ms']:.1f}× |")
print(f"\nWall time: signpost {signpost['wall_s']} s ({signpost['calls_per_s']} calls/s, each written durably before the answer), moto {moto['wall_s']} s ({moto['calls_per_s']} calls/s, in memory).\n")
if dnsperf:
    print(f"DNS afterwards (dnsperf, 10 s, 4 clients, against the first VPC's resolver): {dnsperf}.")
PY
cat benches/aws-api/results.md
