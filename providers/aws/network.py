"""Network: a VPC with private and public subnets per zone, NAT egress, endpoints, and the
security groups that chain gateway -> load balancer -> servers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.layout import subnet_layout, zones_to_use

ANYWHERE = "0.0.0.0/0"


@dataclass
class NetworkArgs:
    """What the network needs: its address range and the two ports traffic flows to."""

    vpc_cidr: str
    listener_port: int
    server_port: int
    zones: int = 3
    #: interface endpoints for ECR and CloudWatch Logs, so image pulls and logs skip the NAT
    private_endpoints: bool = False
    #: the bucket VPC flow logs go to (under `vpc/`); None records no flow logs
    flow_log_bucket_arn: pulumi.Input[str] | None = None
    #: resources the flow log needs first (the log bucket's policy)
    logs_ready: list[pulumi.Resource] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    """The VPC. Only the gateway's VPC link reaches the load balancer, only the load balancer
    reaches the servers, and the servers leave the VPC only through NAT on port 443."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    vpc_link_security_group_id: pulumi.Output[str]
    alb_security_group_id: pulumi.Output[str]
    server_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        zones = zones_to_use(aws.get_availability_zones(state="available", opts=invoke).names,
                             args.zones)
        _, region = account_and_region(self)
        layout = subnet_layout(args.vpc_cidr, len(zones))

        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_support=True,
                               enable_dns_hostnames=True, tags={**args.tags, "Name": name},
                               opts=child)
        self.vpc_id = self.vpc.id
        if args.flow_log_bucket_arn is not None:
            aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL",
                            log_destination_type="s3", max_aggregation_interval=600,
                            log_destination=pulumi.Output.concat(args.flow_log_bucket_arn,
                                                                 "/vpc/"),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=args.logs_ready))
        # the default security group of a VPC allows all traffic between its members: empty it
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=self.vpc.id, routes=[
            {"cidr_block": ANYWHERE, "gateway_id": igw.id}], opts=child)

        self.private_subnet_ids, private_rts = [], []
        for i, zone in enumerate(zones):
            public = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=self.vpc.id,
                                    cidr_block=layout.public[i], availability_zone=zone,
                                    map_public_ip_on_launch=False,
                                    tags={**args.tags, "Name": f"{name}-public-{zone}"},
                                    opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=public.id,
                                          route_table_id=public_rt.id, opts=child)
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=child)
            nat = aws.ec2.NatGateway(f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public.id,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
            private = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=self.vpc.id,
                                     cidr_block=layout.private[i], availability_zone=zone,
                                     tags={**args.tags, "Name": f"{name}-private-{zone}"},
                                     opts=child)
            rt = aws.ec2.RouteTable(f"{name}-private-{i}", vpc_id=self.vpc.id, routes=[
                {"cidr_block": ANYWHERE, "nat_gateway_id": nat.id}], opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=private.id,
                                          route_table_id=rt.id, opts=child)
            self.private_subnet_ids.append(private.id)
            private_rts.append(rt.id)

        # model downloads stay on AWS's network and skip the NAT's per-GB charge
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=self.vpc.id, vpc_endpoint_type="Gateway",
                            service_name=f"com.amazonaws.{region}.s3",
                            route_table_ids=private_rts, opts=child)

        vpc_link_sg = self._group(name, "vpc-link", "API Gateway VPC link to the load balancer")
        alb_sg = self._group(name, "alb", "internal load balancer")
        server_sg = self._group(name, "server", "GPU model servers")
        self._egress(f"{name}-vpc-link-to-alb", vpc_link_sg, args.listener_port, alb_sg)
        self._ingress(f"{name}-alb-from-vpc-link", alb_sg, args.listener_port, vpc_link_sg)
        self._egress(f"{name}-alb-to-server", alb_sg, args.server_port, server_sg)
        self._ingress(f"{name}-server-from-alb", server_sg, args.server_port, alb_sg)
        # ECR, S3 and CloudWatch are reached over HTTPS only
        aws.vpc.SecurityGroupEgressRule(f"{name}-server-https-out", security_group_id=server_sg.id,
                                        ip_protocol="tcp", from_port=443, to_port=443,
                                        cidr_ipv4=ANYWHERE, description="HTTPS to AWS APIs",
                                        opts=child)
        if args.private_endpoints:
            self._endpoints(name, region, server_sg)

        self.vpc_link_security_group_id = vpc_link_sg.id
        self.alb_security_group_id = alb_sg.id
        self.server_security_group_id = server_sg.id
        self.register_outputs({"vpc_id": self.vpc_id,
                               "private_subnet_ids": self.private_subnet_ids})

    def _group(self, name: str, role: str, description: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(f"{name}-{role}", vpc_id=self.vpc.id,
                                     description=f"llmcloud {description}",
                                     opts=pulumi.ResourceOptions(parent=self))

    def _ingress(self, rule: str, group, port: int, source) -> None:
        aws.vpc.SecurityGroupIngressRule(rule, security_group_id=group.id, ip_protocol="tcp",
                                         from_port=port, to_port=port,
                                         referenced_security_group_id=source.id,
                                         opts=pulumi.ResourceOptions(parent=self))

    def _egress(self, rule: str, group, port: int, target) -> None:
        aws.vpc.SecurityGroupEgressRule(rule, security_group_id=group.id, ip_protocol="tcp",
                                        from_port=port, to_port=port,
                                        referenced_security_group_id=target.id,
                                        opts=pulumi.ResourceOptions(parent=self))

    def _endpoints(self, name: str, region: str, server_sg) -> None:
        endpoint_sg = self._group(name, "endpoints", "interface endpoints")
        self._ingress(f"{name}-endpoints-from-server", endpoint_sg, 443, server_sg)
        for service in ("ecr.api", "ecr.dkr", "logs", "monitoring"):
            aws.ec2.VpcEndpoint(f"{name}-{service.replace('.', '-')}", vpc_id=self.vpc.id,
                                vpc_endpoint_type="Interface", private_dns_enabled=True,
                                service_name=f"com.amazonaws.{region}.{service}",
                                subnet_ids=self.private_subnet_ids,
                                security_group_ids=[endpoint_sg.id],
                                opts=pulumi.ResourceOptions(parent=self))
