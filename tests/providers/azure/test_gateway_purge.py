"""`llmcloud destroy` on Azure purges the API Management service Azure keeps soft-deleted
for 48 hours, whose name the same stack's next `up` asks for again (it failed on it). A
purge Azure refuses or does not finish leaves the destroy done, with the command to run."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure import gateway_purge
from llmcloud.providers.azure.gateway_purge import purge_deleted_gateway
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from tests.providers.declared import declared_for, one
from tests.providers.fakes import Answer, Clock, Outputs

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
APIM_ID = (f"/subscriptions/{SUB}/resourceGroups/llm-dev-rg/providers/"
           "Microsoft.ApiManagement/service/llm-dev-apim-3f2a")
DELETED = (f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/locations/westeurope/"
           "deletedservices/llm-dev-apim-3f2a?api-version=2022-08-01")
OPERATION = "https://management.azure.com/operations/purge-1"


class Arm:
    """Resource Manager: answers in order per (method, address); every call recorded."""

    def __init__(self, answers: dict[tuple[str, str], list[Answer]]):
        self.answers, self.calls = answers, []

    def request(self, method: str, address: str) -> Answer:
        self.calls.append((method, address))
        queue = self.answers[(method, address)]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def answer(status: int, headers: dict | None = None, body: dict | None = None) -> Answer:
    reply = Answer(status, body if body is not None else {})
    reply.headers = headers or {}
    return reply


def test_the_deleted_services_address_is_the_one_azure_documents():
    # learn.microsoft.com/rest/api/apimanagement/deleted-services/purge
    assert gateway_purge.deleted_service_address(APIM_ID, "westeurope") == (
        "llm-dev-apim-3f2a", DELETED)


def test_an_accepted_purge_is_followed_to_its_end():
    clock = Clock()
    arm = Arm({("DELETE", DELETED): [answer(202, {"Location": OPERATION, "Retry-After": "5"})],
               ("GET", OPERATION): [answer(202, {"Retry-After": "5"}), answer(200)]})
    result = purge_deleted_gateway(arm.request, APIM_ID, "westeurope", clock=clock,
                                   sleep=clock.sleep)
    assert result == {"api_management_purged": "llm-dev-apim-3f2a"}
    assert arm.calls == [("DELETE", DELETED), ("GET", OPERATION), ("GET", OPERATION)]
    assert clock.now == 10


def test_without_an_operation_to_follow_the_record_going_says_it_is_purged():
    clock = Clock()
    arm = Arm({("DELETE", DELETED): [answer(202)],
               ("GET", DELETED): [answer(200), answer(503), answer(404)]})
    result = purge_deleted_gateway(arm.request, APIM_ID, "westeurope", clock=clock,
                                   sleep=clock.sleep)
    assert result == {"api_management_purged": "llm-dev-apim-3f2a"}


def test_no_soft_deleted_service_is_nothing_to_purge():
    arm = Arm({("DELETE", DELETED): [answer(404)]})
    assert purge_deleted_gateway(arm.request, APIM_ID, "westeurope") == {}


@pytest.mark.parametrize("replies", [
    [answer(403, body={"error": {"message": "does not have authorization"}})],
    [answer(202, {"Location": OPERATION})],
], ids=["refused", "never-finishes"])
def test_a_refused_or_unfinished_purge_says_how_to_purge_by_hand(replies):
    clock = Clock()
    arm = Arm({("DELETE", DELETED): replies, ("GET", OPERATION): [answer(202)]})
    result = purge_deleted_gateway(arm.request, APIM_ID, "westeurope", timeout=60,
                                   clock=clock, sleep=clock.sleep)
    assert set(result) == {"note"}
    assert ("az apim deletedservice purge --service-name llm-dev-apim-3f2a --location "
            "westeurope") in result["note"]
    assert clock.now <= 70


class Engine(Outputs):
    def __init__(self, outputs: dict, events: list):
        super().__init__(outputs)
        self.events = events

    def destroy(self) -> dict:
        self.events.append("destroy")
        return {"changes": {"delete": 30}}


def test_destroy_purges_the_stacks_own_service_after_the_stack_is_gone(monkeypatch, tmp_path):
    # the service name and region the program declares are the ones purged
    resources, _ = declared_for("azure", "dev", region="westeurope")
    service = one(resources, "azure-native:apimanagement:ApiManagementService")
    name = service.inputs["serviceName"]
    assert service.inputs["location"] == "westeurope"
    apim_id = (f"/subscriptions/{SUB}/resourceGroups/llm-dev-rg/providers/"
               f"Microsoft.ApiManagement/service/{name}")
    events: list = []
    calls: list = []

    def purge(request, apim, location):
        events.append("purge")
        calls.append((apim, location))
        return {"api_management_purged": name}

    monkeypatch.setattr(gateway_purge, "purge_deleted_gateway", purge)
    monkeypatch.setattr("llmcloud.providers.azure.arm.Arm.__init__",
                        lambda self, environ, credential=None: None)
    monkeypatch.setattr(AzureProvider, "_engine",
                        lambda self, ctx, operation: Engine({"apim_id": apim_id}, events))
    from llmcloud.stacks.spec import DeploymentSpec

    ctx = StackContext(tmp_path, "dev", DeploymentSpec.model_validate(
        {"model": {"source": "org/m"}, "region": "westeurope"}), environ={})
    result = AzureProvider().destroy(ctx)
    assert events == ["destroy", "purge"]
    assert calls == [(apim_id, "westeurope")]
    assert result == {"changes": {"delete": 30}, "api_management_purged": name}


def test_a_purge_that_cannot_sign_in_leaves_the_destroy_done(monkeypatch, tmp_path):
    from llmcloud.stacks.errors import CredentialsError
    from llmcloud.stacks.spec import DeploymentSpec

    def no_token(self, environ, credential=None):
        raise CredentialsError("Azure refused a token for Resource Manager")

    monkeypatch.setattr("llmcloud.providers.azure.arm.Arm.__init__", no_token)
    monkeypatch.setattr(AzureProvider, "_engine",
                        lambda self, ctx, operation: Engine({"apim_id": APIM_ID}, []))
    ctx = StackContext(tmp_path, "dev", DeploymentSpec.model_validate(
        {"model": {"source": "org/m"}, "region": "westeurope"}), environ={})
    result = AzureProvider().destroy(ctx)
    assert result["changes"] == {"delete": 30}
    assert "az apim deletedservice purge --service-name llm-dev-apim-3f2a" in result["note"]


def test_a_stack_without_a_gateway_is_only_destroyed(monkeypatch, tmp_path):
    from llmcloud.stacks.spec import DeploymentSpec

    monkeypatch.setattr(AzureProvider, "_engine",
                        lambda self, ctx, operation: Engine({}, []))
    ctx = StackContext(tmp_path, "dev", DeploymentSpec.model_validate(
        {"model": {"source": "org/m"}}), environ={})
    assert AzureProvider().destroy(ctx) == {"changes": {"delete": 30}}
