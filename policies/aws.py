"""AWS security checks, ported from checkov and reported under checkov's ids."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from llmcloud.policies.core import CheckResult, Resource, resource_check, stack_check

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
LOGGING = "aws:s3/bucketLogging:BucketLogging"
REPOSITORY = "aws:ecr/repository:Repository"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
REST_API = "aws:apigateway/restApi:RestApi"
STAGE = "aws:apigateway/stage:Stage"
METHOD = "aws:apigateway/method:Method"
ROUTE = "aws:apigatewayv2/route:Route"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KMS_KEY = "aws:kms/key:Key"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
#: the VPC's default group takes inline `ingress` rules the same way
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
POLICY_DOCUMENTS = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy",
                    "aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy")
ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
               "aws:iam/policyAttachment:PolicyAttachment",
               "aws:iam/userPolicyAttachment:UserPolicyAttachment",
               "aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
ROLE = "aws:iam/role:Role"
AUTOSCALING_GROUP = "aws:autoscaling/group:Group"
SUBNET = "aws:ec2/subnet:Subnet"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
TOPIC = "aws:sns/topic:Topic"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
ADMIN_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/AdministratorAccess$")
SECRET_PATTERNS = (
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret key", re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY")),
    # checkov's: a 40-character secret assigned to an AWS key name (AWS_SECRET_KEY=...)
    ("an AWS secret key", re.compile(r"(?i)(aws_?)?(secret_?)?(access_?)?key['\"]?\s*(:|=>|=)"
                                     r"\s*['\"]?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    # the name may carry a prefix (DB_PASSWORD, OPENAI_API_KEY): `\b` alone missed those
    ("a password", re.compile(r"(?i)(?:\b|_)(password|passwd|secret|api_?key|token)\s*[=:]\s*"
                              r"['\"]?[^\s'\"$]{8,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
)


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- compute ---------------------------------------------------------------------------


@resource_check("CKV_AWS_79", "instance metadata requires IMDSv2 tokens", LAUNCH_TEMPLATE,
                INSTANCE)
def imdsv2(inputs: Mapping[str, Any]) -> str | None:
    options = inputs.get("metadataOptions") or {}
    if options.get("httpEndpoint") == "disabled" or options.get("httpTokens") == "required":
        return None
    return "metadataOptions.httpTokens must be 'required' (IMDSv1 leaks role credentials)"


@resource_check("CKV_AWS_8", "EBS volumes are encrypted", LAUNCH_TEMPLATE, INSTANCE)
def ebs_encrypted(inputs: Mapping[str, Any]) -> str | None:
    mappings = list(inputs.get("blockDeviceMappings") or [])
    if inputs.get("rootBlockDevice") is not None:
        mappings = [{"ebs": inputs["rootBlockDevice"]}, *mappings]
    # an Instance's further volumes: ebsBlockDevices (encrypted on each, no `ebs` level)
    mappings += [{"ebs": device, "deviceName": device.get("deviceName")}
                 for device in inputs.get("ebsBlockDevices") or []]
    if not mappings:
        return "no block device mapping sets encryption on the root volume"
    for mapping in mappings:
        ebs = mapping.get("ebs") or {}
        if not _true(ebs.get("encrypted")):
            return f"volume {mapping.get('deviceName', 'root')} is not encrypted"
    return None


@resource_check("CKV_AWS_88", "instances get no public IP address", LAUNCH_TEMPLATE, INSTANCE)
def no_public_ip(inputs: Mapping[str, Any]) -> str | None:
    if _true(inputs.get("associatePublicIpAddress")):
        return "associatePublicIpAddress is true"
    for interface in inputs.get("networkInterfaces") or []:
        if _true(interface.get("associatePublicIpAddress")):
            return "a network interface has associatePublicIpAddress true"
    return None


@resource_check("CKV2_AWS_15", "an Auto Scaling group behind a load balancer uses its health "
                "checks", AUTOSCALING_GROUP)
def group_uses_balancer_health(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub AutoScaling.1: EC2 status checks alone keep a server that no longer
    # answers the load balancer's readiness check in service
    if not (inputs.get("targetGroupArns") or inputs.get("loadBalancers")):
        return None
    if inputs.get("healthCheckType") == "ELB":
        return None
    return "healthCheckType is not ELB: a server the load balancer finds unhealthy is kept"


def _decode(user_data: str) -> str:
    try:
        return base64.b64decode(user_data, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return user_data


@resource_check("CKV_AWS_46", "no secrets in user data", LAUNCH_TEMPLATE, INSTANCE)
def no_secrets_in_user_data(inputs: Mapping[str, Any]) -> str | None:
    # an Instance takes userData (plain) or userDataBase64; a LaunchTemplate, userData (base64)
    for key in ("userData", "userDataBase64"):
        text = _decode(str(inputs.get(key) or ""))
        for what, pattern in SECRET_PATTERNS:
            if pattern.search(text):
                return f"user data contains {what}; pass secrets through the instance role"
    return None


# -- storage and registry ----------------------------------------------------------------


def _public_access(field_name: str) -> Any:
    def check(inputs: Mapping[str, Any]) -> str | None:
        return None if _true(inputs.get(field_name)) else f"{field_name} must be true"
    return check


for _id, _field in (("CKV_AWS_53", "blockPublicAcls"), ("CKV_AWS_54", "blockPublicPolicy"),
                    ("CKV_AWS_55", "ignorePublicAcls"), ("CKV_AWS_56", "restrictPublicBuckets")):
    resource_check(_id, f"public access block sets {_field}", PUBLIC_ACCESS_BLOCK)(
        _public_access(_field))


@resource_check("CKV_AWS_51", "image tags are immutable", REPOSITORY)
def immutable_tags(inputs: Mapping[str, Any]) -> str | None:
    if str(inputs.get("imageTagMutability", "MUTABLE")).startswith("IMMUTABLE"):
        return None
    return "imageTagMutability must be IMMUTABLE (a tag must always mean the same image)"


@resource_check("CKV_AWS_163", "images are scanned on push", REPOSITORY)
def scan_on_push(inputs: Mapping[str, Any]) -> str | None:
    config = inputs.get("imageScanningConfiguration") or {}
    return None if _true(config.get("scanOnPush")) else "imageScanningConfiguration.scanOnPush"


@resource_check("CKV_AWS_136", "the repository is encrypted with KMS", REPOSITORY)
def repository_kms(inputs: Mapping[str, Any]) -> str | None:
    configs = inputs.get("encryptionConfigurations") or []
    if any(c.get("encryptionType") == "KMS" for c in configs):
        return None
    return "encryptionConfigurations must use encryptionType KMS"


@resource_check("CKV_AWS_7", "KMS keys rotate", KMS_KEY)
def key_rotation(inputs: Mapping[str, Any]) -> str | None:
    return None if _true(inputs.get("enableKeyRotation")) else "enableKeyRotation is not true"


# -- load balancer and gateway -----------------------------------------------------------


def _is_alb(inputs: Mapping[str, Any]) -> bool:
    return inputs.get("loadBalancerType", "application") == "application"


@resource_check("CKV_AWS_131", "the ALB drops invalid header fields", *LOAD_BALANCERS)
def drop_invalid_headers(inputs: Mapping[str, Any]) -> str | None:
    if not _is_alb(inputs) or _true(inputs.get("dropInvalidHeaderFields")):
        return None
    return "dropInvalidHeaderFields must be true (request smuggling)"


#: ALB's desync mitigation modes that refuse ambiguous requests (AWS's default: defensive)
DESYNC_SAFE = ("defensive", "strictest")


@resource_check("CKV_AWS_328", "the ALB mitigates HTTP desync (defensive or strictest)",
                *LOAD_BALANCERS)
def desync_mitigation(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub ELB.12; unset is AWS's default, defensive
    if not _is_alb(inputs) or inputs.get("desyncMitigationMode", "defensive") in DESYNC_SAFE:
        return None
    return (f"desyncMitigationMode is {inputs.get('desyncMitigationMode')}: ambiguous "
            "requests pass (request smuggling)")


@resource_check("CKV_AWS_91", "load balancer access logs are on", *LOAD_BALANCERS)
def alb_logs(inputs: Mapping[str, Any]) -> str | None:
    logs = inputs.get("accessLogs") or {}
    if _true(logs.get("enabled", False)) and logs.get("bucket"):
        return None
    return "accessLogs must be enabled with a bucket"


@resource_check("CKV_AWS_76", "API Gateway stages write access logs", STAGE)
def gateway_logs(inputs: Mapping[str, Any]) -> str | None:
    settings = inputs.get("accessLogSettings") or {}
    return None if settings.get("destinationArn") else "accessLogSettings.destinationArn unset"


@resource_check("CKV_AWS_73", "API Gateway stages trace requests with X-Ray", STAGE)
def gateway_tracing(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub APIGateway.3
    return None if _true(inputs.get("xrayTracingEnabled")) else "xrayTracingEnabled is not true"


#: the legacy policies (`TLS_1_0`, a regional API's default, and `TLS_1_2`) keep CBC suites
#: and key exchanges without forward secrecy; the enhanced ones that still admit TLS 1.2 and
#: offer only forward-secret suites, or admit TLS 1.3 alone
FORWARD_SECRET_POLICY = re.compile(r"^SecurityPolicy_TLS13_(1_3|1_2_(FIPS_)?PFS)_")


@resource_check("LLMCLOUD_AWS_1", "REST APIs accept only TLS 1.2+ with forward secrecy, "
                "through their own endpoint", REST_API)
def gateway_tls(inputs: Mapping[str, Any]) -> str | None:
    policy = inputs.get("securityPolicy")
    if not policy or not FORWARD_SECRET_POLICY.match(str(policy)):
        return (f"securityPolicy is {policy or 'unset (TLS_1_0: TLS 1.0 and 1.1 accepted)'}; "
                "use an enhanced policy with forward secrecy (SecurityPolicy_TLS13_...)")
    if inputs.get("endpointAccessMode") != "STRICT":
        return "endpointAccessMode is not STRICT: a request may front another host in SNI"
    return None


@resource_check("CKV_AWS_309", "every API route requires authorization", METHOD, ROUTE)
def route_authorization(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("httpMethod") == "OPTIONS":
        return None
    kind = inputs.get("authorization", inputs.get("authorizationType", "NONE"))
    return None if kind not in (None, "NONE") else "authorization is NONE: anyone may call"


@resource_check("CKV_AWS_158", "log groups are encrypted with KMS", LOG_GROUP)
def log_group_kms(inputs: Mapping[str, Any]) -> str | None:
    return None if inputs.get("kmsKeyId") else "kmsKeyId is not set"


@resource_check("CKV_AWS_26", "SNS topics are encrypted with KMS", TOPIC)
def topic_kms(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub SNS.1
    return None if inputs.get("kmsMasterKeyId") else "kmsMasterKeyId is not set"


@resource_check("CKV_AWS_364", "Lambda permissions given to an AWS service name the source",
                LAMBDA_PERMISSION)
def permission_names_source(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub Lambda.1: a service principal with neither condition lets that
    # service invoke the function on behalf of any account
    if not str(inputs.get("principal") or "").endswith(".amazonaws.com"):
        return None
    if inputs.get("sourceArn") or inputs.get("sourceAccount"):
        return None
    return "neither sourceArn nor sourceAccount is set: any account's service may invoke it"


# -- network -----------------------------------------------------------------------------

OPEN = ("0.0.0.0/0", "::/0")


def _open_rules(type_token: str, inputs: Mapping[str, Any]) -> Iterable[tuple[int, int]]:
    """(from, to) port ranges open to the whole internet."""
    if type_token == INGRESS_RULE:
        if inputs.get("cidrIpv4") in OPEN or inputs.get("cidrIpv6") in OPEN:
            yield _ports(inputs)
    elif type_token == SG_RULE:
        cidrs = [*(inputs.get("cidrBlocks") or []), *(inputs.get("ipv6CidrBlocks") or [])]
        if inputs.get("type") == "ingress" and any(c in OPEN for c in cidrs):
            yield _ports(inputs)
    else:
        for rule in inputs.get("ingress") or []:
            cidrs = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]
            if any(c in OPEN for c in cidrs):
                yield _ports(rule)


def _ports(rule: Mapping[str, Any]) -> tuple[int, int]:
    if str(rule.get("ipProtocol", rule.get("protocol", "tcp"))) in ("-1", "all"):
        return 0, 65535
    low = int(rule.get("fromPort") or 0)
    return low, int(rule.get("toPort") or low)


def _no_open_port(port: int):
    def check_with_type(type_token: str):
        def check(inputs: Mapping[str, Any]) -> str | None:
            for low, high in _open_rules(type_token, inputs):
                if low <= port <= high:
                    return f"port {port} is open to the internet"
            return None
        return check
    return check_with_type


@resource_check("CKV_AWS_130", "subnets do not give public IPs to what starts in them", SUBNET)
def subnet_no_public_ip(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub EC2.15
    if _true(inputs.get("mapPublicIpOnLaunch")):
        return "mapPublicIpOnLaunch is true"
    return None


for _id, _port in (("CKV_AWS_24", 22), ("CKV_AWS_25", 3389), ("CKV_AWS_260", 80)):
    for _type in (INGRESS_RULE, SECURITY_GROUP, DEFAULT_SECURITY_GROUP, SG_RULE):
        resource_check(_id, f"port {_port} is not open to 0.0.0.0/0", _type)(
            _no_open_port(_port)(_type))


# -- identity ----------------------------------------------------------------------------


def _statements(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    # Mapping, not dict: the policy pack hands checks read-only Mapping proxies
    statements = (document or {}).get("Statement", []) if isinstance(document, Mapping) else []
    return [statements] if isinstance(statements, Mapping) else list(statements)


@resource_check("CKV_AWS_1", "no IAM policy allows the '*' action", *POLICY_DOCUMENTS, ROLE)
def no_star_action(inputs: Mapping[str, Any]) -> str | None:
    # a Role carries its documents in inlinePolicies[].policy, the others in `policy`
    documents = [inputs.get("policy"),
                 *(p.get("policy") for p in inputs.get("inlinePolicies") or [])]
    for statement in (s for document in documents for s in _statements(document)):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and "*" in actions:
            return "a statement allows Action '*': name the actions the workload needs"
    return None


@resource_check("CKV_AWS_274", "no role holds AdministratorAccess", *ATTACHMENTS, ROLE)
def no_admin(inputs: Mapping[str, Any]) -> str | None:
    arns = [inputs.get("policyArn"), *(inputs.get("managedPolicyArns") or [])]
    if any(isinstance(arn, str) and ADMIN_POLICY.match(arn) for arn in arns):
        return "AdministratorAccess is attached"
    return None


#: what KMS's decryption actions are called in a policy (AWS Security Hub KMS.1 and KMS.2)
DECRYPT_ACTIONS = ("kms:decrypt", "kms:reencryptfrom")


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])


def _every_key(resource: Any) -> bool:
    text = str(resource)
    return text == "*" or text.endswith(":key/*") or text.endswith(":*")


@resource_check("LLMCLOUD_AWS_3", "no IAM policy allows decryption with every KMS key",
                *POLICY_DOCUMENTS, ROLE)
def no_decrypt_everything(inputs: Mapping[str, Any]) -> str | None:
    # AWS Security Hub KMS.2 (inline policies) and KMS.1 (customer managed ones): a role
    # that may decrypt with any key reads every secret the account encrypts
    documents = [inputs.get("policy"),
                 *(p.get("policy") for p in inputs.get("inlinePolicies") or [])]
    for statement in (s for document in documents for s in _statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a).lower() for a in _as_list(statement.get("Action"))]
        decrypts = [d for d in DECRYPT_ACTIONS
                    if any(fnmatch.fnmatchcase(d, pattern) for pattern in actions)]
        if decrypts and any(_every_key(r) for r in _as_list(statement.get("Resource"))):
            return (f"a statement allows {decrypts[0]} on every key: name the key ARNs "
                    "the workload decrypts with")
    return None


# -- checks across resources: each bucket and its separate settings ---------------------


def _bucket_keys(bucket: Resource) -> set[str]:
    keys = {bucket.id, bucket.outputs.get("bucket"), bucket.inputs.get("bucket")}
    return {k for k in keys if isinstance(k, str) and k}


def _settings(resources: list[Resource], type_token: str, bucket: Resource) -> list[Resource]:
    keys = _bucket_keys(bucket)
    return [r for r in resources if r.type == type_token and r.inputs.get("bucket") in keys]


def _log_targets(resources: list[Resource]) -> set[str]:
    targets = {r.inputs.get("targetBucket") for r in resources if r.type == LOGGING}
    for r in resources:
        if r.type in LOAD_BALANCERS:
            targets.add((r.inputs.get("accessLogs") or {}).get("bucket"))
    return {t for t in targets if isinstance(t, str)}


def _per_bucket(check_id: str, resources: list[Resource], verdict) -> list[CheckResult]:
    targets = _log_targets(resources)
    results = []
    for bucket in (r for r in resources if r.type == BUCKET):
        passed, message = verdict(bucket, bool(_bucket_keys(bucket) & targets))
        results.append(CheckResult(check_id, bucket.name, passed, message))
    return results


@stack_check("CKV2_AWS_6", "every bucket has a public access block")
def bucket_has_public_access_block(resources: list[Resource]) -> list[CheckResult]:
    def verdict(bucket: Resource, _: bool) -> tuple[bool, str]:
        blocks = _settings(resources, PUBLIC_ACCESS_BLOCK, bucket)
        if blocks:
            return True, "has a public access block"
        return False, "no BucketPublicAccessBlock refers to this bucket"
    return _per_bucket("CKV2_AWS_6", resources, verdict)


def _sse_algorithms(resources: list[Resource], bucket: Resource) -> list[str]:
    algorithms = []
    for config in _settings(resources, SSE, bucket):
        for rule in config.inputs.get("rules") or []:
            default = rule.get("applyServerSideEncryptionByDefault") or {}
            algorithms.append(default.get("sseAlgorithm"))
    return algorithms


@stack_check("CKV_AWS_19", "every bucket is encrypted at rest")
def bucket_encrypted(resources: list[Resource]) -> list[CheckResult]:
    def verdict(bucket: Resource, _: bool) -> tuple[bool, str]:
        algorithms = _sse_algorithms(resources, bucket)
        if any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms):
            return True, f"encrypted with {', '.join(a for a in algorithms if a)}"
        return False, "no server-side encryption configuration refers to this bucket"
    return _per_bucket("CKV_AWS_19", resources, verdict)


@stack_check("CKV_AWS_145", "every bucket is encrypted with KMS")
def bucket_kms(resources: list[Resource]) -> list[CheckResult]:
    def verdict(bucket: Resource, is_log_target: bool) -> tuple[bool, str]:
        algorithms = _sse_algorithms(resources, bucket)
        if any(a and a.startswith("aws:kms") for a in algorithms):
            return True, "encrypted with a KMS key"
        if is_log_target and "AES256" in algorithms:
            return True, "log bucket: AWS log delivery writes only to SSE-S3 buckets"
        return False, "server-side encryption must use aws:kms"
    return _per_bucket("CKV_AWS_145", resources, verdict)


@stack_check("CKV_AWS_21", "every bucket is versioned")
def bucket_versioned(resources: list[Resource]) -> list[CheckResult]:
    def verdict(bucket: Resource, _: bool) -> tuple[bool, str]:
        for versioning in _settings(resources, VERSIONING, bucket):
            config = versioning.inputs.get("versioningConfiguration") or {}
            if config.get("status") == "Enabled":
                return True, "versioning enabled"
        return False, "no BucketVersioning with status Enabled refers to this bucket"
    return _per_bucket("CKV_AWS_21", resources, verdict)


@stack_check("CKV_AWS_18", "every bucket logs access")
def bucket_logged(resources: list[Resource]) -> list[CheckResult]:
    def verdict(bucket: Resource, is_log_target: bool) -> tuple[bool, str]:
        if _settings(resources, LOGGING, bucket):
            return True, "access logging enabled"
        if is_log_target:
            return True, "log bucket: logging it into itself would loop"
        return False, "no BucketLogging refers to this bucket"
    return _per_bucket("CKV_AWS_18", resources, verdict)


@stack_check("CKV2_AWS_65", "every bucket has ACLs disabled (bucket owner enforced)")
def bucket_acls_disabled(resources: list[Resource]) -> list[CheckResult]:
    # AWS Security Hub S3.12: with ACLs disabled, only policies grant access
    def verdict(bucket: Resource, _: bool) -> tuple[bool, str]:
        for controls in _settings(resources, OWNERSHIP, bucket):
            if (controls.inputs.get("rule") or {}).get("objectOwnership") == "BucketOwnerEnforced":
                return True, "ACLs disabled (BucketOwnerEnforced)"
        return False, "no BucketOwnershipControls with BucketOwnerEnforced refers to this bucket"
    return _per_bucket("CKV2_AWS_65", resources, verdict)


def _denies_plain_http(policy: Any) -> bool:
    for statement in _statements(policy):
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        actions = _as_list(statement.get("Action"))
        if (statement.get("Effect") == "Deny" and statement.get("Principal") in ("*", {"AWS": "*"})
                and any(a in ("s3:*", "*") for a in actions)
                and str(condition.get("aws:SecureTransport")).lower() == "false"):
            return True
    return False


@stack_check("LLMCLOUD_AWS_2", "every bucket refuses requests not made over TLS")
def bucket_tls_only(resources: list[Resource]) -> list[CheckResult]:
    # AWS Security Hub S3.5: a bucket policy that denies s3:* when aws:SecureTransport is false
    def verdict(bucket: Resource, _: bool) -> tuple[bool, str]:
        if any(_denies_plain_http(p.inputs.get("policy"))
               for p in _settings(resources, BUCKET_POLICY, bucket)):
            return True, "its policy denies requests without TLS"
        return False, ("no bucket policy denies s3:* when aws:SecureTransport is false: "
                       "plain-HTTP requests are served")
    return _per_bucket("LLMCLOUD_AWS_2", resources, verdict)


@stack_check("CKV2_AWS_12", "every VPC's default security group allows no traffic")
def default_group_closed(resources: list[Resource]) -> list[CheckResult]:
    # AWS Security Hub EC2.2: AWS makes each VPC a default group that lets its members talk
    # to each other and out; declaring it without rules empties it
    groups = {r.inputs.get("vpcId"): r for r in resources if r.type == DEFAULT_SECURITY_GROUP}
    results = []
    for vpc in (r for r in resources if r.type == VPC):
        group = groups.get(vpc.id)
        if group is None:
            results.append(CheckResult("CKV2_AWS_12", vpc.name, False, "no DefaultSecurityGroup "
                                       "empties this VPC's default group (it allows all "
                                       "traffic between its members)"))
        elif group.inputs.get("ingress") or group.inputs.get("egress"):
            results.append(CheckResult("CKV2_AWS_12", vpc.name, False,
                                       "the VPC's default security group has rules"))
        else:
            results.append(CheckResult("CKV2_AWS_12", vpc.name, True,
                                       "the default security group has no rules"))
    return results


@stack_check("CKV2_AWS_4", "every API Gateway stage logs execution errors (ERROR or INFO)")
def stage_execution_logging(resources: list[Resource]) -> list[CheckResult]:
    # AWS Security Hub APIGateway.1: every method of the stage logs at ERROR or INFO
    settings = [r.inputs for r in resources if r.type == METHOD_SETTINGS
                and r.inputs.get("methodPath") == "*/*"]
    results = []
    for stage in (r for r in resources if r.type == STAGE):
        levels = [(s.get("settings") or {}).get("loggingLevel") for s in settings
                  if s.get("restApi") == stage.inputs.get("restApi")
                  and s.get("stageName") == stage.inputs.get("stageName")]
        passed = any(level in ("ERROR", "INFO") for level in levels)
        message = (f"every method logs at {levels[0]}" if passed else
                   "no MethodSettings on */* sets loggingLevel ERROR or INFO for this stage")
        results.append(CheckResult("CKV2_AWS_4", stage.name, passed, message))
    return results


@stack_check("CKV2_AWS_11", "every VPC records flow logs")
def vpc_flow_logs(resources: list[Resource]) -> list[CheckResult]:
    logged = {r.inputs.get("vpcId") for r in resources if r.type == FLOW_LOG}
    return [CheckResult("CKV2_AWS_11", vpc.name, vpc.id in logged,
                        "flow logs recorded" if vpc.id in logged else "no FlowLog for this VPC")
            for vpc in resources if vpc.type == VPC]


# -- SageMaker ---------------------------------------------------------------------------

SAGEMAKER_MODEL = "aws:sagemaker/model:Model"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
#: SageMaker instance families with local NVMe storage: encrypted by the instance's hardware,
#: and SageMaker refuses a KMS key for them (CreateEndpointConfig, `KmsKeyId`)
INSTANCE_STORAGE_FAMILIES = frozenset({
    "g4dn", "g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n",
    "c5d", "m5d", "r5d", "c6id", "m6id", "r6id", "m7gd", "c7gd", "r7gd"})


def _instance_storage(instance_type: Any) -> bool:
    parts = str(instance_type or "").split(".")
    return len(parts) == 3 and parts[0] == "ml" and parts[1] in INSTANCE_STORAGE_FAMILIES


@resource_check("CKV_AWS_98", "SageMaker endpoint data is encrypted with KMS", ENDPOINT_CONFIG)
def endpoint_data_kms(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("kmsKeyArn"):
        return None
    variants = inputs.get("productionVariants") or []
    if variants and all(_instance_storage(v.get("instanceType")) for v in variants):
        # a documented exception, as the log bucket's: SageMaker rejects KmsKeyId here
        return None
    return "kmsKeyArn is not set (only instance types with local NVMe storage may omit it)"


@resource_check("CKV_AWS_370", "SageMaker models have no direct internet access",
                SAGEMAKER_MODEL)
def model_network_isolation(inputs: Mapping[str, Any]) -> str | None:
    if _true(inputs.get("enableNetworkIsolation")):
        return None
    vpc = inputs.get("vpcConfig") or {}
    if vpc.get("subnets") and vpc.get("securityGroupIds"):
        return None
    return ("enableNetworkIsolation is not true and no vpcConfig confines the container: "
            "it may reach the internet")
