#!/bin/sh
# Builds the signed test hierarchy the dnssec and forward tests serve with
# Knot: a root of our own (its key is the trust anchor in anchor.key), the
# TLD test., and below it one zone per case. Run from this directory; it
# rewrites *.signed, anchor.key and the keys. Signatures are valid from
# 2025-01-01 to 2045-01-01 except in expired.test (2023 to 2024); tests
# pass a fixed time inside that window to the validator.
#
# Tools: ldns-keygen, ldns-signzone, ldns-key2ds (Debian ldnsutils).
set -eu
cd "$(dirname "$0")"
rm -rf keys ./*.signed anchor.key
mkdir keys
inception=20250101000000
expiration=20450101000000

# keygen ALGORITHM ZONE [BITS] -> prints "ksk zsk" base names
keygen() {
	algorithm=$1 zone=$2 bits=${3:-}
	size=${bits:+-b $bits}
	# shellcheck disable=SC2086
	ksk=$(cd keys && ldns-keygen -a "$algorithm" $size -k "$zone")
	# shellcheck disable=SC2086
	zsk=$(cd keys && ldns-keygen -a "$algorithm" $size "$zone")
	echo "keys/$ksk keys/$zsk"
}

# sign ZONE FILE KEYS... (extra ldns-signzone options in $options)
sign() {
	zone=$1 file=$2
	shift 2
	# shellcheck disable=SC2086
	ldns-signzone -i "$inception" -e "$expiration" ${options:-} -o "$zone" -f "$file.signed" "$file" "$@"
	options=
}

header() {
	cat <<ZONE
\$ORIGIN $1
\$TTL 3600
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300
@ NS ns.test.
ZONE
}

ds_of() { ldns-key2ds -n -2 "$1.key"; }

# --- leaf zones ---------------------------------------------------------
# nsec.test: Ed25519, NSEC, a wildcard, a CNAME chain, an empty non-terminal.
set -- $(keygen ED25519 nsec.test.)
nsec_ksk=$1
{ header nsec.test.
  echo 'www A 192.0.2.1'
  echo 'www AAAA 2001:db8::1'
  echo 'alias CNAME www'
  echo '*.wild TXT "wildcard"'
  echo 'host.ent A 192.0.2.2'
} > nsec.test.zone
sign nsec.test. nsec.test.zone "$@"

# nsec3.test: ECDSA P-384, NSEC3 with salt and 5 iterations, a wildcard.
set -- $(keygen ECDSAP384SHA384 nsec3.test.)
nsec3_ksk=$1
{ header nsec3.test.
  echo 'www A 192.0.2.3'
  echo '*.wild A 192.0.2.4'
} > nsec3.test.zone
options="-n -t 5 -s abcd"
sign nsec3.test. nsec3.test.zone "$@"

# rsa.test: RSA/SHA-512, NSEC3 without salt or iterations (RFC 9276).
set -- $(keygen RSASHA512 rsa.test. 2048)
rsa_ksk=$1
{ header rsa.test.; echo 'www A 192.0.2.5'; } > rsa.test.zone
options="-n -t 0"
sign rsa.test. rsa.test.zone "$@"

# iter.test: NSEC3 with 200 iterations, above the RFC 9276 limit of 150.
set -- $(keygen ECDSAP256SHA256 iter.test.)
iter_ksk=$1
{ header iter.test.; echo 'www A 192.0.2.6'; } > iter.test.zone
options="-n -t 200 -s ff"
sign iter.test. iter.test.zone "$@"

# expired.test: signatures that ended in 2024.
set -- $(keygen ECDSAP256SHA256 expired.test.)
expired_ksk=$1
{ header expired.test.; echo 'www A 192.0.2.7'; } > expired.test.zone
ldns-signzone -i 20230101000000 -e 20240101000000 -o expired.test. -f expired.test.zone.signed expired.test.zone "$@"

# tampered.test: www's address changed after signing.
set -- $(keygen ECDSAP256SHA256 tampered.test.)
tampered_ksk=$1
{ header tampered.test.; echo 'www A 192.0.2.8'; } > tampered.test.zone
sign tampered.test. tampered.test.zone "$@"
sed -i 's/192\.0\.2\.8/192.0.2.99/' tampered.test.zone.signed

# nokey.test: the parent's DS names a key the zone does not publish.
set -- $(keygen ECDSAP256SHA256 nokey.test.)
{ header nokey.test.; echo 'www A 192.0.2.9'; } > nokey.test.zone
sign nokey.test. nokey.test.zone "$@"
set -- $(keygen ECDSAP256SHA256 nokey.test.)
nokey_ksk=$1

# insecure.test: unsigned, and no DS in test.
{ header insecure.test.; echo 'www A 192.0.2.10'; } > insecure.test.zone
cp insecure.test.zone insecure.test.zone.signed

# --- test. --------------------------------------------------------------
set -- $(keygen RSASHA256 test. 2048)
test_ksk=$1
{ header test.
  echo 'ns A 127.0.0.1'
  for child in nsec nsec3 rsa iter expired tampered nokey insecure; do
    echo "$child NS ns.test."
  done
  for ksk in "$nsec_ksk" "$nsec3_ksk" "$rsa_ksk" "$iter_ksk" "$expired_ksk" "$tampered_ksk" "$nokey_ksk"; do
    ds_of "$ksk"
  done
} > test.zone
options="-n -t 0"
sign test. test.zone "$@"

# --- the root -----------------------------------------------------------
set -- $(keygen ECDSAP256SHA256 .)
root_ksk=$1
{ header .
  echo 'test. NS ns.test.'
  echo 'ns.test. A 127.0.0.1'
  ds_of "$test_ksk"
} > root.zone
sign . root.zone "$@"

# The trust anchor: the root KSK as a DS record, as a trust-anchor-file holds it.
ds_of "$root_ksk" > anchor.key
rm -rf keys
