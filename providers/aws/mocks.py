"""Realistic answers for `llmcloud plan`, which runs the AWS program under Pulumi's mocks:
what AWS would answer to each lookup, and the outputs AWS would give each new resource.

Plain functions over plain data: no Pulumi, no AWS, no credentials.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

ACCOUNT_ID = "123456789012"
AMI_ID = "ami-0123456789abcdef0"
#: ELB's log-delivery account per region (AWS docs: "Enable access logs for your ALB")
ELB_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "eu-west-1": "156460612806", "eu-west-2": "652711504416",
    "eu-west-3": "009996457667", "eu-central-1": "054676820928", "eu-north-1": "897822967062",
    "ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-south-1": "718504428378", "ca-central-1": "985666609251", "sa-east-1": "507241528517",
}


#: SageMaker resource types and the word their ARNs use
SAGEMAKER_KINDS = {"aws:sagemaker/model:Model": "model",
                   "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
                       "endpoint-config",
                   "aws:sagemaker/endpoint:Endpoint": "endpoint"}


class UnmockedInvoke(KeyError):
    """The program called a lookup that `plan` has no answer for."""


def mock_invoke(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    """What AWS answers to the data-source lookup `token` (camelCase, as Pulumi sends it)."""
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        names = [f"{region}{z}" for z in "abcdef"]
        return {"id": region, "names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
                "groupNames": [region] * 6, "state": args.get("state"), "region": region}
    if token == "aws:index/getRegion:getRegion":
        return {"id": region, "name": region, "region": region,
                "endpoint": f"ec2.{region}.amazonaws.com", "description": region}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"id": ACCOUNT_ID, "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/llmcloud-plan", "userId": "AIDAPLAN"}
    if token == "aws:ssm/getParameter:getParameter":
        name = args["name"]
        return {"id": name, "name": name, "type": "String", "value": AMI_ID,
                "insecureValue": AMI_ID, "version": 42, "withDecryption": True,
                "arn": f"arn:aws:ssm:{region}::parameter{name}", "region": region}
    if token == "aws:elb/getServiceAccount:getServiceAccount":
        account = ELB_ACCOUNTS.get(region, ELB_ACCOUNTS["us-east-1"])
        return {"id": account, "arn": f"arn:aws:iam::{account}:root", "region": region}
    raise UnmockedInvoke(f"plan has no mocked answer for {token}")


def _short(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def mock_resource(type_: str, name: str, inputs: dict[str, Any],
                  region: str) -> tuple[str, dict[str, Any]]:
    """The id and output state AWS would give resource `name` of type `type_`."""
    h = _short(type_, name)
    acct = ACCOUNT_ID
    state = dict(inputs)
    rid = f"{name}-{h}"
    service = type_.split(":")[1].split("/")[0] if type_.count(":") >= 2 else "mock"
    state.setdefault("arn", f"arn:aws:{service}:{region}:{acct}:{rid}")
    if type_ == "aws:s3/bucket:Bucket":
        rid = f"{inputs.get('bucketPrefix', 'bucket-')}{h}"
        state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}",
                     bucketRegionalDomainName=f"{rid}.s3.{region}.amazonaws.com")
    elif type_ == "aws:kms/key:Key":
        rid = str(uuid.UUID(hashlib.sha256(f"{type_}/{name}".encode()).hexdigest()[:32]))
        state.update(keyId=rid, arn=f"arn:aws:kms:{region}:{acct}:key/{rid}")
    elif type_ == "aws:ecr/repository:Repository":
        repo = inputs.get("name", rid)
        state.update(repositoryUrl=f"{acct}.dkr.ecr.{region}.amazonaws.com/{repo}",
                     arn=f"arn:aws:ecr:{region}:{acct}:repository/{repo}", registryId=acct)
    elif type_ == "aws:lb/loadBalancer:LoadBalancer":
        suffix = f"app/{inputs.get('name', name)}/{h}"
        state.update(arn=f"arn:aws:elasticloadbalancing:{region}:{acct}:loadbalancer/{suffix}",
                     arnSuffix=suffix,
                     dnsName=f"internal-{inputs.get('name', name)}-{h}.{region}.elb.amazonaws.com")
    elif type_ == "aws:lb/targetGroup:TargetGroup":
        suffix = f"targetgroup/{inputs.get('namePrefix', '')}{h}/{h}"
        state.update(arn=f"arn:aws:elasticloadbalancing:{region}:{acct}:{suffix}",
                     arnSuffix=suffix)
    elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        rid = f"lt-{h}{h[:9]}"
        # every distinct content is a new version, as EC2 numbers them
        content = json.dumps(inputs, sort_keys=True, default=str)
        state["latestVersion"] = int(_short(content), 16) % 1000 + 1
    elif type_ == "aws:apigateway/restApi:RestApi":
        rid = h[:10]
        state.update(rootResourceId=f"{h[:6]}root",
                     executionArn=f"arn:aws:execute-api:{region}:{acct}:{rid}")
    elif type_ == "aws:apigateway/stage:Stage":
        api = inputs.get("restApi", "api")
        stage = inputs.get("stageName", "api")
        state.update(invokeUrl=f"https://{api}.execute-api.{region}.amazonaws.com/{stage}",
                     arn=f"arn:aws:apigateway:{region}::/restapis/{api}/stages/{stage}")
    elif type_ == "aws:lambda/function:Function":
        fn = f"arn:aws:lambda:{region}:{acct}:function:{inputs.get('name', name)}"
        state.update(arn=fn, invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/"
                                       f"functions/{fn}/invocations")
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{region}:{acct}:log-group:{inputs.get('name', name)}"
    elif type_ == "aws:iam/role:Role":
        state.setdefault("name", rid)
        state["arn"] = f"arn:aws:iam::{acct}:role/{state['name']}"
    elif type_ == "aws:iam/instanceProfile:InstanceProfile":
        state["arn"] = f"arn:aws:iam::{acct}:instance-profile/{rid}"
    elif type_ == "aws:autoscaling/group:Group":
        rid = inputs.get("name", rid)
        state["name"] = rid
    elif type_ in SAGEMAKER_KINDS:
        rid = inputs.get("name", rid)
        state.update(name=rid, arn=f"arn:aws:sagemaker:{region}:{acct}:"
                                   f"{SAGEMAKER_KINDS[type_]}/{rid.lower()}")
    elif type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        rid = inputs.get("name", rid)
        state.update(name=rid, arn=f"arn:aws:cloudwatch:{region}:{acct}:alarm:{rid}")
    elif type_ == "aws:appautoscaling/target:Target":
        rid = f"{inputs.get('serviceNamespace')}/{inputs.get('resourceId')}"
    elif type_ == "aws:apigateway/method:Method":
        state.setdefault("httpMethod", inputs.get("httpMethod"))
    state.setdefault("id", rid)
    return rid, state
