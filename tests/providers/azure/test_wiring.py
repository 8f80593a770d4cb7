"""How the Azure stack's layers are wired, asserted on what the program declared (mocks)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from llmcloud.providers.azure.failing_requests import READER
from llmcloud.providers.azure.identity import (
    ACR_PULL,
    MONITORING_METRICS_PUBLISHER,
    STORAGE_BLOB_DATA_READER,
)
from llmcloud.providers.azure.mocks import SUBSCRIPTION_ID
from tests.providers.azure.helpers import (
    ALERT,
    API,
    API_POLICY,
    APIM,
    AUTOSCALE,
    CONTAINER,
    ENDPOINT,
    IDENTITY,
    INSIGHTS,
    LB,
    NSG,
    REGISTRY,
    ROLE,
    STORAGE,
    SUBNET,
    VMSS,
    WORKSPACE,
    custom_data,
    declared,
    of_type,
    one,
)

IMAGE = "myreg.azurecr.io/server@sha256:" + "b" * 64
#: one spec that flips every other knob at once (each declaration costs seconds)
OTHER = {"compute": {"min_replicas": 2, "max_replicas": 5, "spot": True},
         "gateway": {"public": False, "quota": 1000}, "tags": {"environment": "production"},
         "autoscaling": {"signal": "requests", "target": 30}, "image": IMAGE}


def test_every_layer_and_output_is_declared():
    resources, outputs = declared()
    assert {"network", "model_store", "registry", "identity", "gpu_pool", "load_balancer",
            "gateway", "monitoring"} <= {r.layer for r in resources}
    for type_token in (VMSS, AUTOSCALE, LB, APIM, API, STORAGE, CONTAINER, REGISTRY, IDENTITY,
                       WORKSPACE, ALERT):
        assert of_type(resources, type_token), type_token
    account = one(resources, STORAGE).inputs["accountName"]
    assert outputs["model_uri"] == f"az://{account}/llmcloud/models/qwen2-5-0-5b-instruct/v1"
    assert outputs["model_store_uri"] == f"az://{account}/llmcloud/models"
    assert outputs["endpoint_url"] == one(resources, APIM).outputs["gatewayUrl"]
    assert outputs["registry_url"].endswith(".azurecr.io")
    assert outputs["image"].startswith(outputs["registry_url"] + "/")
    assert outputs["image"].endswith("@sha256:" + "0" * 64) and outputs["image_placeholder"]
    assert {r.inputs.get("location") for r in resources if "location" in r.inputs} <= {
        "eastus", "global"}


def test_the_scale_set_uses_the_identity_and_sits_in_the_load_balancers_pool():
    resources, _ = declared()
    vmss, lb = one(resources, VMSS), one(resources, LB)
    assert vmss.inputs["identity"] == {"type": "UserAssigned",
                                       "userAssignedIdentities": [one(resources, IDENTITY).id]}
    profile = vmss.inputs["virtualMachineProfile"]
    nic = profile["networkProfile"]["networkInterfaceConfigurations"][0]
    ip = nic["ipConfigurations"][0]
    pool_id = f"{lb.id}/backendAddressPools/servers"
    assert ip["loadBalancerBackendAddressPools"] == [{"id": pool_id}]
    assert [p["name"] for p in lb.inputs["backendAddressPools"]] == ["servers"]
    assert ip["subnet"]["id"] == one(resources, SUBNET, "servers").id
    assert "publicIPAddressConfiguration" not in ip
    probe_id = profile["networkProfile"]["healthProbe"]["id"]
    assert probe_id == f"{lb.id}/probes/ready"
    assert lb.inputs["probes"] == [{"name": "ready", "protocol": "Http", "port": 8080,
                                    "requestPath": "/health/ready", "intervalInSeconds": 5,
                                    "probeThreshold": 2, "numberOfProbes": 2}]
    rule = lb.inputs["loadBalancingRules"][0]
    assert rule["backendAddressPool"]["id"] == pool_id and rule["probe"]["id"] == probe_id
    assert rule["backendPort"] == 8080
    assert lb.inputs["sku"]["name"] == "Standard"
    assert "publicIPAddress" not in lb.inputs["frontendIPConfigurations"][0]


def test_the_servers_run_the_hpc_image_with_keys_only_and_encryption_at_host():
    resources, _ = declared()
    vmss = one(resources, VMSS)
    profile = vmss.inputs["virtualMachineProfile"]
    assert vmss.inputs["sku"]["name"] == "Standard_NC24ads_A100_v4"
    assert profile["storageProfile"]["imageReference"]["offer"] == "ubuntu-hpc"
    assert profile["storageProfile"]["osDisk"]["diskSizeGB"] == 220
    assert profile["securityProfile"] == {"encryptionAtHost": True}
    linux = profile["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert "adminPassword" not in profile["osProfile"]
    assert profile["priority"] == "Regular"
    # leaving the balancer, the default drain (300 s, the gateway's timeout) and 30 s spare
    assert profile["scheduledEventsProfile"] == {"terminateNotificationProfile": {
        "enable": True, "notBeforeTimeout": "PT6M"}}
    assert "llmcloud-drain" in custom_data(resources)
    assert len(profile["osProfile"]["customData"]) <= 65535  # Azure's limit
    assert vmss.inputs["automaticRepairsPolicy"]["enabled"] is True
    assert "sku.capacity" in vmss.ignore_changes


def test_role_assignments_are_scoped_to_the_container_registry_and_scale_set():
    resources, _ = declared()
    principal = one(resources, IDENTITY).outputs["principalId"]
    # (and the requests-failing log alert's own identity reads its workspace only, and API
    # Management's publishes its traces to Application Insights only)
    rule = one(resources, "azure-native:monitor:ScheduledQueryRule").outputs["identity"]
    gateway = one(resources, APIM).outputs["identity"]
    grants = {(r.inputs["roleDefinitionId"].rsplit("/", 1)[-1], r.inputs["scope"],
               r.inputs["principalId"]) for r in of_type(resources, ROLE)}
    assert grants == {
        (STORAGE_BLOB_DATA_READER, one(resources, CONTAINER).id, principal),
        (ACR_PULL, one(resources, REGISTRY).id, principal),
        (MONITORING_METRICS_PUBLISHER, one(resources, VMSS).id, principal),
        (READER, one(resources, WORKSPACE).id, rule["principalId"]),
        (MONITORING_METRICS_PUBLISHER, one(resources, INSIGHTS).id, gateway["principalId"])}
    assert len(of_type(resources, ROLE)) == len(grants)
    for role in of_type(resources, ROLE):
        assert role.inputs["principalType"] == "ServicePrincipal"
        assert role.inputs["roleDefinitionId"].startswith(
            f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/"
            "roleDefinitions/")


def test_a_new_model_version_is_a_new_scale_set_model_rolled_out_by_rolling_upgrade():
    v1, _ = declared(model={"version": "v1"})
    v2, outputs = declared(model={"version": "v2"})
    set1, set2 = one(v1, VMSS), one(v2, VMSS)
    assert set1.name == set2.name and set1.id == set2.id  # the same set, updated in place
    data1, data2 = custom_data(v1), custom_data(v2)
    assert "/models/qwen2-5-0-5b-instruct/v2 --model-version v2" in data2 and "v1" not in data2
    assert data1 != data2
    # the custom data is the only change to the scale set: a new model, nothing else
    profile1 = dict(set1.inputs["virtualMachineProfile"], osProfile=None)
    profile2 = dict(set2.inputs["virtualMachineProfile"], osProfile=None)
    assert profile1 == profile2
    policy = set2.inputs["upgradePolicy"]
    assert policy["mode"] == "Rolling"
    rolling = policy["rollingUpgradePolicy"]
    assert rolling["rollbackFailedInstancesOnPolicyBreach"] is True
    assert rolling["maxSurge"] is True
    assert 0 < rolling["maxBatchInstancePercent"] <= 50
    assert rolling["maxUnhealthyUpgradedInstancePercent"] <= 50
    assert outputs["model_version"] == "v2"


def test_autoscale_follows_the_spec():
    resources, _ = declared()
    setting = one(resources, AUTOSCALE)
    vmss_id = one(resources, VMSS).id
    assert setting.inputs["targetResourceUri"] == vmss_id
    profile = setting.inputs["profiles"][0]
    assert profile["capacity"] == {"minimum": "1", "maximum": "2", "default": "1"}
    assert {r["metricTrigger"]["metricName"] for r in profile["rules"]} == {"InFlightRequests"}
    assert {r["metricTrigger"]["metricResourceUri"] for r in profile["rules"]} == {vmss_id}
    assert setting.inputs["notifications"][0]["operation"] == "Scale"
    other, _ = declared(**OTHER)
    profile = one(other, AUTOSCALE).inputs["profiles"][0]
    assert profile["capacity"] == {"minimum": "2", "maximum": "5", "default": "2"}
    trigger = profile["rules"][0]["metricTrigger"]
    assert trigger["metricResourceUri"] == one(other, APIM).id
    assert (trigger["metricName"], trigger["dividePerInstance"]) == ("Requests", True)


def test_the_gateway_forwards_to_the_internal_load_balancer_with_keys_and_limits():
    resources, _ = declared()
    apim, api = one(resources, APIM), one(resources, API)
    lb_ip = one(resources, LB).inputs["frontendIPConfigurations"][0]["privateIPAddress"]
    assert api.inputs["serviceUrl"] == f"http://{lb_ip}:8080"
    assert api.inputs["subscriptionRequired"] is True
    assert api.inputs["protocols"] == ["https"]
    assert apim.inputs["virtualNetworkType"] == "External"
    assert apim.inputs["virtualNetworkConfiguration"]["subnetResourceId"] == one(
        resources, SUBNET, "gateway").id
    assert apim.inputs["sku"] == {"name": "Developer", "capacity": 1}
    policy = ET.fromstring(one(resources, API_POLICY).inputs["value"])
    assert policy.find("inbound/rate-limit-by-key") is not None
    # only the OpenAI API: the servers' /metrics and /health/* stay inside the network
    operations = of_type(resources, "azure-native:apimanagement:ApiOperation")
    assert sorted((o.inputs["method"], o.inputs["urlTemplate"]) for o in operations) == [
        ("GET", "/v1/*"), ("POST", "/v1/*")]
    other, outputs = declared(**OTHER)
    apim = one(other, APIM)
    assert apim.inputs["virtualNetworkType"] == "Internal"
    assert apim.inputs["sku"]["name"] == "Premium" and outputs["apim_sku"] == "Premium"
    policy = ET.fromstring(one(other, API_POLICY).inputs["value"])
    assert policy.find("inbound/quota-by-key").get("calls") == "1000"


def test_only_the_gateway_subnet_and_the_probe_reach_the_servers():
    resources, _ = declared()
    gateway_cidr = one(resources, SUBNET, "gateway").inputs["addressPrefix"]
    rules = one(resources, NSG, "servers").inputs["securityRules"]
    allowed = {(r.get("sourceAddressPrefix"), r["destinationPortRange"]) for r in rules
               if r["access"] == "Allow"}
    assert allowed == {(gateway_cidr, "8080"), ("AzureLoadBalancer", "8080")}
    assert any(r["access"] == "Deny" and r["sourceAddressPrefix"] == "*" for r in rules)
    servers = one(resources, SUBNET, "servers")
    assert servers.inputs["natGateway"]["id"] == one(
        resources, "azure-native:network:NatGateway").id
    assert servers.inputs["defaultOutboundAccess"] is False
    for nsg in of_type(resources, NSG):
        for rule in nsg.inputs["securityRules"]:
            if rule["access"] == "Allow":
                assert rule.get("destinationPortRange") in ("8080", "443", "3443", "6390", "*")


def test_store_and_registry_are_reached_through_private_endpoints():
    resources, _ = declared()
    endpoints = {e.inputs["privateLinkServiceConnections"][0]["groupIds"][0]: e
                 for e in of_type(resources, ENDPOINT)}
    assert set(endpoints) == {"blob", "registry"}
    targets = {g: e.inputs["privateLinkServiceConnections"][0]["privateLinkServiceId"]
               for g, e in endpoints.items()}
    assert targets == {"blob": one(resources, STORAGE).id,
                       "registry": one(resources, REGISTRY).id}
    subnet = one(resources, SUBNET, "endpoints").id
    assert all(e.inputs["subnet"]["id"] == subnet for e in endpoints.values())
    blob = one(resources, "azure-native:storage:BlobServiceProperties").inputs
    assert blob["isVersioningEnabled"] is True and blob["deleteRetentionPolicy"]["enabled"]


def test_spot_and_a_pushed_image():
    resources, outputs = declared(**OTHER)
    profile = one(resources, VMSS).inputs["virtualMachineProfile"]
    assert (profile["priority"], profile["evictionPolicy"]) == ("Spot", "Delete")
    assert profile["billingProfile"] == {"maxPrice": -1}
    assert f"IMAGE={IMAGE}" in custom_data(resources)
    assert "llmcloud-metrics" not in custom_data(resources)  # requests signal: no gauge
    assert outputs["image"] == IMAGE and "image_placeholder" not in outputs


def test_alerts_and_diagnostics_land_in_the_workspace_and_action_group():
    resources, _ = declared()
    workspace = one(resources, WORKSPACE).id
    group = one(resources, "azure-native:monitor:ActionGroup").id
    alerts = of_type(resources, ALERT)
    assert len(alerts) == 4  # and requests-failing, a log search alert: 5xx %
    assert all(a.inputs["actions"] == [{"actionGroupId": group}] for a in alerts)
    assert {a.inputs["scopes"][0] for a in alerts} == {
        one(resources, LB).id, one(resources, APIM).id, one(resources, VMSS).id}
    log_alert = one(resources, "azure-native:monitor:ScheduledQueryRule")
    assert log_alert.inputs["scopes"] == [workspace]
    assert log_alert.inputs["actions"] == {"actionGroups": [group]}
    rule = one(resources, "azure-native:monitor:DataCollectionRule")
    assert rule.inputs["destinations"]["logAnalytics"][0]["workspaceResourceId"] == workspace
    association = one(resources, "azure-native:monitor:DataCollectionRuleAssociation")
    assert association.inputs == {"associationName": association.inputs["associationName"],
                                  "resourceUri": one(resources, VMSS).id,
                                  "dataCollectionRuleId": rule.id}
    agent = one(resources, VMSS).inputs["virtualMachineProfile"]["extensionProfile"][
        "extensions"][0]
    assert agent["type"] == "AzureMonitorLinuxAgent"
    assert agent["settings"]["authentication"]["managedIdentity"]["identifier-value"] == one(
        resources, IDENTITY).id
    settings = of_type(resources, "azure-native:monitor:DiagnosticSetting")
    assert {s.inputs["workspaceId"] for s in settings} == {workspace}
    assert {s.inputs["resourceUri"] for s in settings} == {
        one(resources, APIM).id, one(resources, REGISTRY).id, one(resources, LB).id,
        one(resources, STORAGE).id + "/blobServices/default"}


def _keys(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def test_every_input_reaches_azure_under_its_api_name():
    # a dict given where the SDK expects a union of types is sent as written: snake_case
    # names there would reach Azure unrecognised
    resources, _ = declared()
    snake = {(r.type, k) for r in resources for k in _keys(dict(r.inputs)) if "_" in k}
    assert snake == set()
    criteria = of_type(resources, ALERT)[0].inputs["criteria"]
    assert criteria["odataType"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    assert {"criterionType", "metricName", "timeAggregation"} <= set(criteria["allOf"][0])
