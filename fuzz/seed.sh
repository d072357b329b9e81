#!/usr/bin/env bash
# Build the seed corpora for the fuzz targets under fuzz/corpus/ (gitignored).
# Safe to re-run: it only adds files. Usage: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")"
vectors=../crates/wire/tests/vectors

mkdir -p corpus/message corpus/name corpus/presentation corpus/build_then_parse corpus/master_file corpus/transfer_stream

# message: every golden packet, captured and hand-built.
cp "$vectors"/*.bin corpus/message/

# name: the wire form of each captured question name (the bytes after the
# 12-byte header, so the name starts at offset 0), and a few names as text.
for query in "$vectors"/*.query.bin; do
    tail -c +13 "$query" > "corpus/name/wire-$(basename "$query" .query.bin)"
done
i=0
for text in '.' 'example.' 'www.example.com' 'a\.b.example.' '\000\255bin.example.' '\065\066C.' \
    'sixty-three-octet-label-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.' '*.example.' '@'; do
    printf '%s' "$text" > "corpus/name/text-$i"
    i=$((i + 1))
done

# presentation: one record per file, exactly as written in the test zones
# (relative names resolve against the target's origin, example.).
i=0
for zone in "$vectors"/example.zone "$vectors"/example.com.zone; do
    while IFS= read -r line; do
        case "$line" in '' | ';'* | '$'*) continue ;; esac
        printf '%s\n' "$line" > "corpus/presentation/zone-$i"
        i=$((i + 1))
    done < "$zone"
done

# build_then_parse: absolute records, one per line (TTL % 3 picks the section:
# 0 answer, 1 authority, 2 additional; the first byte sets the size limit).
records=$(cat <<'RECORDS'
example. 300 IN SOA ns1.example. hostmaster.example. 2024010101 7200 900 1209600 300
example. 300 IN NS ns1.example.
example. 300 IN MX 10 mail.example.
ns1.example. 300 IN A 192.0.2.53
ns1.example. 300 IN AAAA 2001:db8::53
chain.example. 300 IN CNAME chain2.example.
dn.example. 300 IN DNAME target.example.
txt.example. 300 IN TXT "hello world" "say \"hi\"" "back\\slash" "semi;colon" "\000\001\255\254bin" ""
_sip._tcp.example. 300 IN SRV 10 60 5060 sip.example.
caa.example. 300 IN CAA 128 tbs "Unknown"
naptr.example. 300 IN NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:info@example.com!" .
svc.example. 300 IN SVCB 1 svc1.example. alpn="h2,h3" port=8443 key667="hello"
alias.example. 300 IN HTTPS 0 www.example.
https.example. 300 IN HTTPS 1 . mandatory=alpn,ipv4hint alpn="h2,h3" no-default-alpn port=8443 ipv4hint=192.0.2.1,192.0.2.2 ech=AEX+DQBBpQAgACB/RRIm ipv6hint=2001:db8::1,2001:db8::2
priv.example. 300 IN TYPE65280 \# 6 010203ff00fe
a\.b.example. 300 IN A 192.0.2.10
\000\255bin.example. 300 IN A 192.0.2.11
RECORDS
)
i=0
while IFS= read -r line; do
    printf '%s\n' "$line" > "corpus/build_then_parse/one-$i"
    i=$((i + 1))
done <<< "$records"
printf '%s\n' "$records" > corpus/build_then_parse/all-answer
cat > corpus/build_then_parse/sections <<'RECORDS'
www.example.com. 300 IN CNAME www-example-com.edge-frontend.eu-west-1.global-lb.cdn.example.com.
www-example-com.edge-frontend.eu-west-1.global-lb.cdn.example.com. 300 IN A 192.0.2.10
www-example-com.edge-frontend.eu-west-1.global-lb.cdn.example.com. 300 IN A 192.0.2.11
www-example-com.edge-frontend.eu-west-1.global-lb.cdn.example.com. 300 IN A 192.0.2.12
example.com. 301 IN NS ns1.example.com.
example.com. 301 IN NS ns2.example.com.
ns1.example.com. 302 IN A 192.0.2.153
ns2.example.com. 302 IN A 198.51.100.153
RECORDS
# A tiny size limit (a first line of byte 20 gives 172 bytes) so truncation is reached.
{ printf '\024\n'; cat corpus/build_then_parse/sections; } > corpus/build_then_parse/truncated

# master_file: the two test zones whole, a few small zones that reach the
# directives, parentheses and relative names, and each zone cut in half.
cp "$vectors"/example.zone "$vectors"/example.com.zone corpus/master_file/
printf '$TTL 60\n@ SOA ns host 1 2 3 4 5\nwww A 192.0.2.1\n' > corpus/master_file/small
printf '$ORIGIN sub.example.\n$TTL 1h\n@ IN SOA ns hostmaster ( 1 7200 900\n  1209600 300 ) ; comment\n  IN NS ns\nns 300 IN A 192.0.2.1\n* TXT "wild" "card"\n' > corpus/master_file/directives
for zone in "$vectors"/example.zone "$vectors"/example.com.zone; do
    head -n "$(($(wc -l < "$zone") / 2))" "$zone" > "corpus/master_file/half-$(basename "$zone")"
done

# Configuration readers: the example configurations, the test suites' unbound.conf files, and small
# resolv.conf variants.
mkdir -p corpus/unbound_conf corpus/forwarder_toml corpus/endpoint_toml corpus/resolv_conf
cp ../examples/forward.toml corpus/forwarder_toml/
cp ../examples/endpoint.toml corpus/endpoint_toml/
find ../bins/forward -name '*.conf' -exec cp {} corpus/unbound_conf/ \; 2>/dev/null || true
printf 'server:\n  interface: 127.0.0.1@5353\n  access-control: 10.0.0.0/8 allow\n  local-zone: "test." static\n  local-data: "a.test. 60 IN A 10.0.0.1"\n  local-data-ptr: "10.0.0.1 a.test"\nforward-zone:\n  name: "corp."\n  forward-addr: 192.0.2.1@5300\n  forward-tls-upstream: yes\n' > corpus/unbound_conf/small
printf 'nameserver 10.0.0.2\nnameserver fe80::1%%2\nsearch a.example b.example\noptions timeout:1 attempts:3 ndots:2 rotate\n' > corpus/resolv_conf/small
printf 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n' > corpus/resolv_conf/systemd-stub

# pipeline: every captured and hand-built query, as the server would receive it.
mkdir -p corpus/pipeline
cp "$vectors"/*.query.bin corpus/pipeline/
for response in "$vectors"/*.response.bin; do
    cp "$response" "corpus/pipeline/as-query-$(basename "$response")"
done

# doh_request: requests as `METHOD TARGET`, header lines, a blank line, a body.
mkdir -p corpus/doh_request
for query in "$vectors"/*.query.bin; do
    name=$(basename "$query" .query.bin)
    encoded=$(basenc --base64url -w0 < "$query" | tr -d '=')
    printf 'GET /dns-query?dns=%s\naccept: application/dns-message\n' "$encoded" > "corpus/doh_request/get-$name"
    { printf 'POST /dns-query\ncontent-type: application/dns-message\n\n'; cat "$query"; } > "corpus/doh_request/post-$name"
done
printf 'GET /dns-query?ct&dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB==\n' > corpus/doh_request/padded
printf 'POST /dns-query\ncontent-type: text/plain\n\nhello' > corpus/doh_request/wrong-type
printf 'PUT /dns-query\n' > corpus/doh_request/method

# aws_api: one call of each protocol (route53resolver JSON 1.1, route53 REST-XML, ec2 query).
mkdir -p corpus/aws_api
printf 'POST /\nx-amz-target: Route53Resolver.CreateResolverRule\ncontent-type: application/x-amz-json-1.1\n\n{"CreatorRequestId":"a","RuleType":"FORWARD","DomainName":"x.example","TargetIps":[{"Ip":"10.0.0.1","Port":53}]}' > corpus/aws_api/resolver-create-rule
printf 'POST /\nx-amz-target: Route53Resolver.ListResolverEndpoints\ncontent-type: application/x-amz-json-1.1\n\n{"MaxResults":5,"Filters":[{"Name":"Direction","Values":["INBOUND"]}]}' > corpus/aws_api/resolver-list-endpoints
printf 'POST /\ncontent-type: application/x-www-form-urlencoded\n\nAction=CreateVpc&CidrBlock=10.9.0.0%%2F16&Version=2016-11-15' > corpus/aws_api/ec2-create-vpc
printf 'POST /\ncontent-type: application/x-www-form-urlencoded\n\nAction=DescribeVpcs&Filter.1.Name=cidr&Filter.1.Value.1=10.9.0.0%%2F16' > corpus/aws_api/ec2-describe-vpcs
printf 'POST /2013-04-01/hostedzone\n\n<CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>z.example</Name><CallerReference>r1</CallerReference><HostedZoneConfig><PrivateZone>true</PrivateZone></HostedZoneConfig><VPC><VPCRegion>us-east-1</VPCRegion><VPCId>vpc-1</VPCId></VPC></CreateHostedZoneRequest>' > corpus/aws_api/route53-create-zone
printf 'GET /2013-04-01/hostedzone?maxitems=2\n' > corpus/aws_api/route53-list-zones

# transfer_stream: whole TCP answer streams (length-prefixed) captured from
# Knot DNS, AXFR and IXFR (crates/wire/tests/vectors/README.md).
cp "$vectors"/transfer/*.stream.bin corpus/transfer_stream/
# dnssec_validate: every golden packet; trust_anchors: the test hierarchy's anchor and the root's.
mkdir -p corpus/dnssec_validate corpus/dnssec_records corpus/trust_anchors
cp "$vectors"/*.bin corpus/dnssec_validate/
cp ../crates/dnssec/tests/zones/anchor.key corpus/trust_anchors/test-anchor
printf '. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n' > corpus/trust_anchors/root-ds

for dir in corpus/*/; do
    echo "$(basename "$dir"): $(find "$dir" -type f | wc -l) files"
done
