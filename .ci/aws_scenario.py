#!/usr/bin/env python3
"""Hybrid DNS set up with boto3 against signpost-endpoint's AWS APIs.

Run by .ci/interop (interop_endpoint_api) with the endpoint's --api URL. It
creates two VPCs on loopback CIDRs, a private zone associated with one then
both, an UPSERTed record, an outbound endpoint with a FORWARD rule to the
"on-premises" unbound and a SYSTEM rule, an inbound endpoint over Do53 and
DoH, and a query logging configuration; then prints shell assignments of the
ids it made, for the script's dig checks. Every step that the service
answers with a status is also checked here (boto3 raises on any error).

Usage: aws_scenario.py ENDPOINT_URL ONPREM_IP ONPREM_PORT STEP
STEP: setup (everything up to the zone in VPC A), associate-b, upsert,
forwarding, inbound, querylog, firewall-chain (a BLOCK rule on a CNAME target, made with
BatchCreateFirewallRule), firewall (DNS Firewall for VPC A: a domain
list with a wildcard blocked with each response, a list imported from a
file (ONPREM_IP is then the file's path), an ALLOW group first, an ALERT rule),
dualstack (the inbound endpoint made DUALSTACK with ::1 by UpdateResolverEndpoint;
resource policies on the FORWARD rule and the query logging configuration).
"""

import json

import sys

import boto3
from botocore.config import Config


def clients(url):
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    config = Config(retries={"max_attempts": 1})
    return (
        session.client("ec2", endpoint_url=url, config=config),
        session.client("route53", endpoint_url=url, config=config),
        session.client("route53resolver", endpoint_url=url, config=config),
    )


def vpc(ec2, cidr, name, ipv6=None):
    """A VPC with two subnets; with `ipv6` (a /56), IPv6 blocks too: the
    subnets get its first two /64s (the first holds ::1 when it is ::/56)."""
    extra = {"Ipv6CidrBlock": ipv6} if ipv6 else {}
    vpc_id = ec2.create_vpc(
        CidrBlock=cidr,
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}],
        **extra,
    )["Vpc"]["VpcId"]
    base = cidr.rsplit(".", 1)[0]
    ipv6_subnets = [{"Ipv6CidrBlock": "::/64"}, {"Ipv6CidrBlock": "0:0:0:1::/64"}] if ipv6 else [{}, {}]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base}.0/26", AvailabilityZone="us-east-1a", **ipv6_subnets[0])[
            "Subnet"]["SubnetId"],
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base}.64/26", AvailabilityZone="us-east-1b", **ipv6_subnets[1])[
            "Subnet"]["SubnetId"],
    ]
    group = ec2.create_security_group(GroupName="dns", Description="DNS to endpoints", VpcId=vpc_id)["GroupId"]
    assert ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]
    return vpc_id, subnets, group


def state(ec2):
    """The ids made so far, found by their Name tags."""
    found = {}
    for item in ec2.describe_vpcs(Filters=[{"Name": "tag-key", "Values": ["Name"]}])["Vpcs"]:
        name = {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}.get("Name")
        found[name] = item["VpcId"]
    return found


def emit(**values):
    for key, value in values.items():
        print(f"{key}={value}")


def main():
    url, onprem_ip, onprem_port, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ec2, route53, resolver = clients(url)
    if step == "setup":
        vpc_a, subnets_a, group_a = vpc(ec2, "127.0.31.0/24", "vpc-a", ipv6="::/56")
        vpc_b, _, _ = vpc(ec2, "127.0.32.0/24", "vpc-b")
        zone = route53.create_hosted_zone(
            Name="corp.example",
            CallerReference="interop-corp",
            VPC={"VPCRegion": "us-east-1", "VPCId": vpc_a},
            HostedZoneConfig={"Comment": "interop", "PrivateZone": True},
        )["HostedZone"]["Id"].split("/")[-1]
        change = route53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": "www.corp.example", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "10.31.0.10"}]}}]},
        )["ChangeInfo"]["Id"]
        route53.get_waiter("resource_record_sets_changed").wait(Id=change, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        emit(VPC_A=vpc_a, VPC_B=vpc_b, ZONE=zone, SUBNET_A1=subnets_a[0], SUBNET_A2=subnets_a[1], SG_A=group_a)
    elif step == "associate-b":
        vpcs = state(ec2)
        zone = route53.list_hosted_zones_by_name(DNSName="corp.example")["HostedZones"][0]["Id"].split("/")[-1]
        route53.associate_vpc_with_hosted_zone(HostedZoneId=zone, VPC={"VPCRegion": "us-east-1", "VPCId": vpcs["vpc-b"]})
        listed = route53.list_hosted_zones_by_vpc(VPCId=vpcs["vpc-b"], VPCRegion="us-east-1")["HostedZoneSummaries"]
        assert [summary["Name"] for summary in listed] == ["corp.example."], listed
    elif step == "upsert":
        zone = route53.list_hosted_zones_by_name(DNSName="corp.example")["HostedZones"][0]["Id"].split("/")[-1]
        route53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": "www.corp.example", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "10.31.0.11"}]}}]},
        )
        sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        assert {(s["Name"], s["Type"]) for s in sets} == {
            ("corp.example.", "SOA"), ("corp.example.", "NS"), ("www.corp.example.", "A")}, sets
    elif step == "forwarding":
        vpcs = state(ec2)
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpcs["vpc-a"]]}])["Subnets"]]
        group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpcs["vpc-a"]]}, {"Name": "group-name", "Values": ["dns"]}])["SecurityGroups"][0]["GroupId"]
        outbound = resolver.create_resolver_endpoint(
            CreatorRequestId="interop-out", Name="outbound", SecurityGroupIds=[group], Direction="OUTBOUND",
            IpAddresses=[{"SubnetId": subnets[0]}, {"SubnetId": subnets[1]}],
        )["ResolverEndpoint"]["Id"]
        forward = resolver.create_resolver_rule(
            CreatorRequestId="interop-forward", Name="onprem", RuleType="FORWARD", DomainName="example.test",
            ResolverEndpointId=outbound, TargetIps=[{"Ip": onprem_ip, "Port": onprem_port}],
        )["ResolverRule"]["Id"]
        system = resolver.create_resolver_rule(
            CreatorRequestId="interop-system", Name="big", RuleType="SYSTEM", DomainName="big.example.test",
        )["ResolverRule"]["Id"]
        for vpc_id in (vpcs["vpc-a"], vpcs["vpc-b"]):
            resolver.associate_resolver_rule(ResolverRuleId=forward, VPCId=vpc_id, Name="onprem")
        resolver.associate_resolver_rule(ResolverRuleId=system, VPCId=vpcs["vpc-a"])
        paginator = resolver.get_paginator("list_resolver_rule_associations")
        associations = [a for page in paginator.paginate(PaginationConfig={"PageSize": 1}) for a in page["ResolverRuleAssociations"]]
        assert len(associations) == 3, associations
        try:
            resolver.delete_resolver_rule(ResolverRuleId=forward)
            raise AssertionError("deleting an associated rule succeeded")
        except resolver.exceptions.ResourceInUseException:
            pass
        emit(OUTBOUND=outbound, FORWARD_RULE=forward, SYSTEM_RULE=system)
    elif step == "inbound":
        vpcs = state(ec2)
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpcs["vpc-a"]]}])["Subnets"]]
        group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["dns"]}, {"Name": "vpc-id", "Values": [vpcs["vpc-a"]]}])["SecurityGroups"][0]["GroupId"]
        inbound = resolver.create_resolver_endpoint(
            CreatorRequestId="interop-in", Name="inbound", SecurityGroupIds=[group], Direction="INBOUND",
            IpAddresses=[{"SubnetId": subnets[0], "Ip": "127.0.31.10"}, {"SubnetId": subnets[1], "Ip": "127.0.31.70"}],
            Protocols=["Do53", "DoH"],
        )["ResolverEndpoint"]["Id"]
        addresses = resolver.list_resolver_endpoint_ip_addresses(ResolverEndpointId=inbound)["IpAddresses"]
        assert sorted(a["Ip"] for a in addresses) == ["127.0.31.10", "127.0.31.70"], addresses
        emit(INBOUND=inbound)
    elif step == "querylog":
        vpcs = state(ec2)
        config = resolver.create_resolver_query_log_config(
            Name="interop", CreatorRequestId="interop-qlc", DestinationArn="arn:aws:s3:::interop-bucket/dns",
        )["ResolverQueryLogConfig"]["Id"]
        resolver.associate_resolver_query_log_config(ResolverQueryLogConfigId=config, ResourceId=vpcs["vpc-a"])
        emit(QUERY_LOG_CONFIG=config)
    elif step == "firewall":
        vpcs = state(ec2)
        domain_file = sys.argv[2]

        def domain_list(name, domains):
            list_id = resolver.create_firewall_domain_list(CreatorRequestId=f"interop-{name}", Name=name)[
                "FirewallDomainList"]["Id"]
            resolver.update_firewall_domains(FirewallDomainListId=list_id, Operation="ADD", Domains=domains)
            return list_id

        blocked = domain_list("blocked", ["*.blocked.test", "gone.test"])
        nodata = domain_list("nodata", ["*.corp.example"])
        redirected = domain_list("redirected", ["*.redirected.test"])
        allowed = resolver.create_firewall_domain_list(CreatorRequestId="interop-allowed", Name="allowed")[
            "FirewallDomainList"]["Id"]
        # ImportFirewallDomains: a local path where AWS takes an S3 URL.
        resolver.import_firewall_domains(FirewallDomainListId=allowed, Operation="REPLACE", DomainFileUrl=domain_file)
        watched = domain_list("watched", ["*.watched.test"])
        block = resolver.create_firewall_rule_group(CreatorRequestId="interop-frg-block", Name="block")[
            "FirewallRuleGroup"]["Id"]
        for priority, (name, list_id, response) in enumerate(
                [("nx", blocked, "NXDOMAIN"), ("nodata", nodata, "NODATA"), ("override", redirected, "OVERRIDE")]):
            extra = {"BlockOverrideDomain": "www.corp.example.", "BlockOverrideDnsType": "CNAME",
                     "BlockOverrideTtl": 30} if response == "OVERRIDE" else {}
            resolver.create_firewall_rule(
                CreatorRequestId=f"interop-rule-{name}", FirewallRuleGroupId=block, FirewallDomainListId=list_id,
                Priority=10 + priority, Action="BLOCK", BlockResponse=response, Name=name, **extra)
        resolver.create_firewall_rule(
            CreatorRequestId="interop-rule-alert", FirewallRuleGroupId=block, FirewallDomainListId=watched,
            Priority=20, Action="ALERT", Name="watch")
        allow = resolver.create_firewall_rule_group(CreatorRequestId="interop-frg-allow", Name="allow")[
            "FirewallRuleGroup"]["Id"]
        resolver.create_firewall_rule(
            CreatorRequestId="interop-rule-allow", FirewallRuleGroupId=allow, FirewallDomainListId=allowed,
            Priority=1, Action="ALLOW", Name="allow")
        resolver.associate_firewall_rule_group(
            CreatorRequestId="interop-assoc-block", FirewallRuleGroupId=block, VpcId=vpcs["vpc-a"], Priority=200,
            Name="block", MutationProtection="ENABLED")
        resolver.associate_firewall_rule_group(
            CreatorRequestId="interop-assoc-allow", FirewallRuleGroupId=allow, VpcId=vpcs["vpc-a"], Priority=100,
            Name="allow")
        associations = resolver.list_firewall_rule_group_associations(VpcId=vpcs["vpc-a"])[
            "FirewallRuleGroupAssociations"]
        assert sorted(a["Priority"] for a in associations) == [100, 200], associations
        domains = resolver.list_firewall_domains(FirewallDomainListId=allowed)["Domains"]
        assert domains == ["www.corp.example"], domains
        protected = [a["Id"] for a in associations if a["MutationProtection"] == "ENABLED"][0]
        try:
            resolver.disassociate_firewall_rule_group(FirewallRuleGroupAssociationId=protected)
            raise AssertionError("disassociating a protected association succeeded")
        except resolver.exceptions.ValidationException:
            pass
        emit(FIREWALL_BLOCK_GROUP=block, FIREWALL_ALLOW_GROUP=allow)
    elif step == "firewall-chain":
        # A rule on a CNAME target (FirewallDomainRedirectionAction INSPECT,
        # AWS's default), made with BatchCreateFirewallRule: the batch's
        # second entry repeats the first one's priority and is reported.
        vpcs = state(ec2)
        tracker = resolver.create_firewall_domain_list(CreatorRequestId="interop-tracker", Name="tracker")[
            "FirewallDomainList"]["Id"]
        resolver.update_firewall_domains(
            FirewallDomainListId=tracker, Operation="ADD", Domains=["*.tracker.interop-cdn.net"])
        group = resolver.create_firewall_rule_group(CreatorRequestId="interop-frg-chain", Name="chain")[
            "FirewallRuleGroup"]["Id"]
        entry = {"FirewallRuleGroupId": group, "FirewallDomainListId": tracker, "Priority": 1, "Action": "BLOCK",
                 "BlockResponse": "NXDOMAIN"}
        batch = resolver.batch_create_firewall_rule(CreateFirewallRuleEntries=[
            dict(entry, CreatorRequestId="interop-chain-1", Name="tracker"),
            dict(entry, CreatorRequestId="interop-chain-2", Name="again", Qtype="TXT"),
        ])
        assert [rule["Name"] for rule in batch["CreatedFirewallRules"]] == ["tracker"], batch
        assert batch["CreatedFirewallRules"][0]["FirewallDomainRedirectionAction"] == "INSPECT_REDIRECTION_DOMAIN"
        assert [error["Code"] for error in batch["CreateErrors"]] == ["ConflictException"], batch
        resolver.associate_firewall_rule_group(
            CreatorRequestId="interop-assoc-chain", FirewallRuleGroupId=group, VpcId=vpcs["vpc-a"], Priority=300,
            Name="chain")
        emit(FIREWALL_CHAIN_GROUP=group)
    elif step == "dualstack":
        # The inbound endpoint (IPV4) becomes DUALSTACK: its first address
        # takes ::1 (UpdateIpAddresses), the second the first free address of
        # its subnet's IPv6 block. IPV6 is never the destination of an update.
        inbound = resolver.list_resolver_endpoints(
            Filters=[{"Name": "Name", "Values": ["inbound"]}])["ResolverEndpoints"][0]["Id"]
        addresses = resolver.list_resolver_endpoint_ip_addresses(ResolverEndpointId=inbound)["IpAddresses"]
        first = [a["IpId"] for a in addresses if a["Ip"] == "127.0.31.10"][0]
        updated = resolver.update_resolver_endpoint(
            ResolverEndpointId=inbound, ResolverEndpointType="DUALSTACK",
            # botocore wants 7 characters at least: ::1 written out.
            UpdateIpAddresses=[{"IpId": first, "Ipv6": "0:0:0:0:0:0:0:1"}])["ResolverEndpoint"]
        assert updated["ResolverEndpointType"] == "DUALSTACK", updated
        addresses = resolver.list_resolver_endpoint_ip_addresses(ResolverEndpointId=inbound)["IpAddresses"]
        assert sorted((a["Ip"], a["Ipv6"]) for a in addresses) == [
            ("127.0.31.10", "::1"), ("127.0.31.70", "::1:0:0:0:4")], addresses
        try:
            resolver.update_resolver_endpoint(ResolverEndpointId=inbound, ResolverEndpointType="IPV6")
            raise AssertionError("an update to IPV6 succeeded")
        except resolver.exceptions.InvalidRequestException:
            pass
        # Resource policies are kept and given back (not enforced).
        rule = resolver.list_resolver_rules(Filters=[{"Name": "Name", "Values": ["onprem"]}])["ResolverRules"][0]
        log = resolver.list_resolver_query_log_configs(
            Filters=[{"Name": "Name", "Values": ["interop"]}])["ResolverQueryLogConfigs"][0]
        for put, get, field, arn in (
                (resolver.put_resolver_rule_policy, resolver.get_resolver_rule_policy, "ResolverRulePolicy",
                 rule["Arn"]),
                (resolver.put_resolver_query_log_config_policy, resolver.get_resolver_query_log_config_policy,
                 "ResolverQueryLogConfigPolicy", log["Arn"])):
            policy = json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": "111122223333"},
                "Action": ["route53resolver:GetResolverRule"], "Resource": [arn]}]})
            assert put(Arn=arn, **{field: policy})["ReturnValue"], field
            assert get(Arn=arn)[field] == policy, field
        try:
            resolver.put_resolver_rule_policy(Arn=rule["Arn"], ResolverRulePolicy="{not json")
            raise AssertionError("a policy that is not JSON was stored")
        except resolver.exceptions.InvalidPolicyDocument:
            pass
        assert resolver.list_firewall_rule_types()["FirewallRuleTypes"] == []
        emit(DUALSTACK_INBOUND=inbound, RULE_ARN=rule["Arn"])
    elif step in ("dnssec-enable", "dnssec-disable"):
        # Route 53 Resolver's per-VPC DNSSEC validation, for VPC B: the update
        # answers with the transition (ENABLING/DISABLING), Get and List with
        # where it settled; the change is live when the call returns.
        vpcs = state(ec2)
        enable = step == "dnssec-enable"
        updated = resolver.update_resolver_dnssec_config(
            ResourceId=vpcs["vpc-b"], Validation="ENABLE" if enable else "DISABLE")["ResolverDNSSECConfig"]
        assert updated["ValidationStatus"] == ("ENABLING" if enable else "DISABLING"), updated
        assert updated["Id"].startswith("rdsc-") and updated["ResourceId"] == vpcs["vpc-b"], updated
        settled = "ENABLED" if enable else "DISABLED"
        got = resolver.get_resolver_dnssec_config(ResourceId=vpcs["vpc-b"])["ResolverDNSSECConfig"]
        assert got["ValidationStatus"] == settled and got["Id"] == updated["Id"], got
        listed = resolver.list_resolver_dnssec_configs(
            Filters=[{"Name": "ValidationStatus", "Values": ["ENABLED"]}])["ResolverDnssecConfigs"]
        assert [c["ResourceId"] for c in listed] == ([vpcs["vpc-b"]] if enable else []), listed
        try:
            resolver.update_resolver_dnssec_config(ResourceId="vpc-00000000", Validation="ENABLE")
            raise AssertionError("updating an unknown VPC succeeded")
        except resolver.exceptions.ResourceNotFoundException:
            pass
        emit(DNSSEC_VPC_B=got["ValidationStatus"])
    else:
        raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    main()
