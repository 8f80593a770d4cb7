"""The endpoint's certificate against the alert that watches it: a self-signed certificate
is renewed only by an `up` in its renewal window, so a stack nobody runs `up` on would
serve an expired certificate and fail every client's TLS handshake unannounced. The uptime
check reports the days until the certificate it was served expires
(`monitoring.googleapis.com/uptime_check/time_until_ssl_cert_expires`, in days); a policy
on it must fire inside the window, on this stack's check, before the certificate ends."""

from __future__ import annotations

from llmcloud.providers.gcp import prices
from tests.providers.gcp.helpers import declared, of_type, one

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
UPTIME = "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
METRIC = "monitoring.googleapis.com/uptime_check/time_until_ssl_cert_expires"


def _expiry_conditions(resources) -> list[dict]:
    return [c["conditionThreshold"] for p in of_type(resources, POLICY)
            for c in p.inputs["conditions"]
            if METRIC in c.get("conditionThreshold", {}).get("filter", "")]


def test_an_alert_fires_before_the_self_signed_certificate_expires_unrenewed():
    resources, _ = declared()
    cert, uptime = one(resources, SELF_SIGNED), one(resources, UPTIME)
    # the check is served this certificate: it asks its address over TLS
    assert uptime.inputs["monitoredResource"]["labels"]["host"] in cert.inputs["ipAddresses"]
    assert uptime.inputs["httpCheck"]["useSsl"] is True
    (condition,) = _expiry_conditions(resources)
    assert f'metric.label.check_id="{uptime.outputs["uptimeCheckId"]}"' in condition["filter"]
    assert condition["comparison"] == "COMPARISON_LT"
    days = condition["thresholdValue"]
    renewal_window_days = cert.inputs["earlyRenewalHours"] / 24
    # inside the window an `up` renews it (before that, the alert would fire on a healthy
    # stack), with time left to run `up` and hand clients the new PEM
    assert 7 <= days < renewal_window_days < cert.inputs["validityPeriodHours"] / 24


def test_a_managed_certificate_is_watched_too_and_no_check_means_no_alert():
    resources, _ = declared(gateway={"domain": "llm.example.com"})
    assert len(_expiry_conditions(resources)) == 1
    closed, _ = declared(network={"allowed_cidrs": ["203.0.113.0/24"]})
    assert not of_type(closed, UPTIME) and not _expiry_conditions(closed)


def test_the_price_table_counts_the_declared_alert_conditions():
    resources, _ = declared()
    conditions = [c for p in of_type(resources, POLICY) for c in p.inputs["conditions"]]
    assert len(conditions) == prices.ALERT_CONDITIONS
