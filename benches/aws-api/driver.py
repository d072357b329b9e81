#!/usr/bin/env python3
"""Drive an AWS API emulator with boto3 and time every call.

Creates VPCS VPCs (each with two subnets and a security group), one
outbound endpoint, RULES FORWARD rules (spread over the VPCs, each
associated with its VPC), one private hosted zone per VPC and RECORDS
records (one ChangeResourceRecordSets call each, spread over the zones).
Prints one JSON object: per operation, the count, median and p99 in
milliseconds, and the wall time and calls per second of the whole run.

Usage: driver.py ENDPOINT_URL [VPCS RULES RECORDS]
Loopback only: ENDPOINT_URL must be http://127.x.x.x:PORT.
"""

import json
import statistics
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config


def main():
    url = sys.argv[1]
    host = urlparse(url).hostname or ""
    if not host.startswith("127."):
        raise SystemExit(f"refusing to drive {url}: loopback only")
    vpcs, rules, records = (int(arg) for arg in (sys.argv[2:5] or ["100", "1000", "10000"]))
    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    config = Config(retries={"max_attempts": 1}, max_pool_connections=4)
    ec2 = session.client("ec2", endpoint_url=url, config=config)
    route53 = session.client("route53", endpoint_url=url, config=config)
    resolver = session.client("route53resolver", endpoint_url=url, config=config)
    timings = {}

    def timed(name, call, **kwargs):
        start = time.perf_counter()
        result = call(**kwargs)
        timings.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return result

    began = time.perf_counter()
    vpc_ids, subnets, groups = [], [], []
    for index in range(vpcs):
        second, third = divmod(index, 250)
        cidr = f"127.{100 + second}.{third}.0/24"
        vpc_id = timed("CreateVpc", ec2.create_vpc, CidrBlock=cidr)["Vpc"]["VpcId"]
        vpc_ids.append(vpc_id)
        base = cidr.rsplit(".", 1)[0]
        subnets.append([
            timed("CreateSubnet", ec2.create_subnet, VpcId=vpc_id, CidrBlock=f"{base}.0/26")["Subnet"]["SubnetId"],
            timed("CreateSubnet", ec2.create_subnet, VpcId=vpc_id, CidrBlock=f"{base}.64/26")["Subnet"]["SubnetId"],
        ])
        groups.append(timed("CreateSecurityGroup", ec2.create_security_group, GroupName="dns", Description="dns", VpcId=vpc_id)["GroupId"])
    outbound = timed(
        "CreateResolverEndpoint",
        resolver.create_resolver_endpoint,
        CreatorRequestId="bench-out",
        SecurityGroupIds=[groups[0]],
        Direction="OUTBOUND",
        IpAddresses=[{"SubnetId": subnets[0][0], "Ip": f"{cidr_base(0)}.10"}, {"SubnetId": subnets[0][1], "Ip": f"{cidr_base(0)}.70"}],
    )["ResolverEndpoint"]["Id"]
    for index in range(rules):
        rule = timed(
            "CreateResolverRule",
            resolver.create_resolver_rule,
            CreatorRequestId=f"bench-rule-{index}",
            RuleType="FORWARD",
            DomainName=f"d{index}.onprem.example",
            ResolverEndpointId=outbound,
            TargetIps=[{"Ip": "127.0.0.1", "Port": 9}],
        )["ResolverRule"]["Id"]
        timed("AssociateResolverRule", resolver.associate_resolver_rule, ResolverRuleId=rule, VPCId=vpc_ids[index % vpcs])
    zones = []
    for index, vpc_id in enumerate(vpc_ids):
        zone = timed(
            "CreateHostedZone",
            route53.create_hosted_zone,
            Name=f"z{index}.corp.example",
            CallerReference=f"bench-zone-{index}",
            VPC={"VPCRegion": "us-east-1", "VPCId": vpc_id},
        )["HostedZone"]["Id"]
        zones.append((zone, f"z{index}.corp.example"))
    for index in range(records):
        zone, name = zones[index % len(zones)]
        timed(
            "ChangeResourceRecordSets",
            route53.change_resource_record_sets,
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
                "Name": f"host{index}.{name}", "Type": "A", "TTL": 60,
                "ResourceRecords": [{"Value": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"}]}}]},
        )
    wall = time.perf_counter() - began
    every = [value for values in timings.values() for value in values]
    summary = {
        "operations": {
            name: {"calls": len(values), "median_ms": round(statistics.median(values), 3), "p99_ms": round(percentile(values, 99), 3)}
            for name, values in timings.items()
        },
        "all": {"calls": len(every), "median_ms": round(statistics.median(every), 3), "p99_ms": round(percentile(every, 99), 3)},
        "wall_s": round(wall, 2),
        "calls_per_s": round(len(every) / wall, 1),
    }
    print(json.dumps(summary))


def cidr_base(index):
    second, third = divmod(index, 250)
    return f"127.{100 + second}.{third}"


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main()
