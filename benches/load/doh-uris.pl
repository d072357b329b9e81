#!/usr/bin/env perl
# DoH GET URIs for h2load -i, one per "NAME TYPE" line of the input (only
# A queries): https://@AUTHORITY@/dns-query?dns= and the wire-format query
# (ID 0, RD set) in base64url without padding. The callers replace
# @AUTHORITY@. Used by run.sh and prof-doh.sh.
use strict;
use warnings;
use MIME::Base64;
while (<>) {
    my ($name, $type) = split;
    my $q = pack("n6", 0, 0x0100, 1, 0, 0, 0);
    $q .= pack("C/a*", $_) for split /\./, $name;
    $q .= pack("C n n", 0, 1, 1);
    my $b = encode_base64($q, "");
    $b =~ tr{+/}{-_};
    $b =~ s/=+$//;
    print "https://\@AUTHORITY\@/dns-query?dns=$b\n";
}
