"""The image an AWS stack serves is never expired by its ECR repository's lifecycle policy:
`up` tags it (`serving_tag.py`) and the policy keeps that tag (`registry.py`), while the
repository stays bounded. The policy is checked against ECR's documented rules (a model of
them below), the tag against moto's ECR and botocore's Stubber."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.aws.registry import lifecycle_policy
from llmcloud.providers.aws.serving_tag import (
    EcrImage,
    ecr_image,
    in_service_digest,
    serving_tag,
    tag_in_service,
)
from llmcloud.providers.base import StackContext
from llmcloud.providers.image_check import NotInRegistry
from llmcloud.stacks.errors import DeploymentError
from tests.providers.aws_helpers import aws_spec, declared, one

ACCOUNT, REGION = "123456789012", "eu-west-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
#: the repository of stack dev, whose model the default spec names
OWN = naming.repository_name("dev", aws_spec().model.name or "model")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


# -- the policy, against ECR's documented rules ------------------------------------------

def _expired(policy: dict, images: list[dict]) -> set[str]:
    """ECR's evaluation as its user guide states it: rules apply by priority, lowest first;
    an image matching the tag requirements of a higher-priority rule is never expired by a
    lower one; `imageCountMoreThan` expires a rule's images beyond the newest N by push
    time. `images`: {"name", "pushed", "tags"}; a pattern's `*` is its only wildcard."""
    import fnmatch

    def selects(selection: dict, image: dict) -> bool:
        status = selection["tagStatus"]
        if status == "untagged":
            return not image["tags"]
        if status == "any":
            return True
        return all(any(fnmatch.fnmatchcase(t, p) for t in image["tags"])
                   for p in selection["tagPatternList"])

    claimed: set[str] = set()
    expired: set[str] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        matched = [i for i in images if selects(selection, i)]
        assert selection["countType"] in ("imageCountMoreThan", "sinceImagePushed")
        if selection["countType"] == "imageCountMoreThan":
            newest_first = sorted(matched, key=lambda i: -i["pushed"])
            expired |= {i["name"] for i in newest_first[selection["countNumber"]:]
                        if i["name"] not in claimed}
        claimed |= {i["name"] for i in matched}
    return expired


DIGEST = "sha256:" + "a" * 64


def test_an_image_served_while_ci_pushed_60_newer_ones_is_kept():
    # a CI pushes an image per commit; the stack still runs the first one
    images = [{"name": f"c{n}", "pushed": n, "tags": [f"v{n}"]} for n in range(61)]
    images[0]["tags"].append(serving_tag(DIGEST))
    expired = _expired(lifecycle_policy(14, 50, 10, in_service=DIGEST), images)
    assert "c0" not in expired
    assert len(images) - len(expired) == 51  # bounded: the newest 50 and the one in service


def test_a_rollback_to_an_image_older_than_the_last_10_served_is_kept():
    # served by push time would have ranked it 12th: the pin keeps it whatever its age
    images = [{"name": f"c{n}", "pushed": n, "tags": [serving_tag(f"sha256:{n:064x}")]}
              for n in range(12)]
    in_service = "sha256:" + f"{0:064x}"
    expired = _expired(lifecycle_policy(14, 50, 10, in_service=in_service), images)
    assert expired == {"c1"}  # the 11th newest served goes; the one in service stays


def test_the_stack_expires_no_served_image_the_count_alone_would_keep():
    # ECR's served rule expires served images beyond its count (no rule "keeps"): with a
    # count under the repository's, a stack that served 12 images lost the 11th newest at
    # once, an image the policy before the serving tag kept among the newest 50
    resources, _ = declared("dev", image=f"{HOST}/{OWN}@{DIGEST}")
    policy = json.loads(one(resources, "aws:ecr/lifecyclePolicy:LifecyclePolicy")
                        .inputs["policy"])
    images = [{"name": f"c{n}", "pushed": n, "tags": [serving_tag(f"sha256:{n:064x}")]}
              for n in range(12)] + [{"name": "now", "pushed": 12, "tags": [serving_tag(DIGEST)]}]
    assert _expired(policy, images) == set()


def test_the_registry_stays_bounded():
    images = [{"name": f"s{n}", "pushed": n, "tags": [serving_tag(f"sha256:{n:064x}")]}
              for n in range(30)]
    images += [{"name": f"b{n}", "pushed": 100 + n, "tags": [f"b{n}"]} for n in range(80)]
    expired = _expired(lifecycle_policy(14, 50, 10, in_service=f"sha256:{3:064x}"), images)
    kept = {i["name"] for i in images} - expired
    assert len([k for k in kept if k.startswith("s")]) == 11  # the last 10 served + in service
    assert len(kept) <= 11 + 50


def test_the_policy_has_ecrs_documented_shape():
    for policy in (lifecycle_policy(14, 50, 10, in_service=DIGEST), lifecycle_policy(14, 50)):
        rules = policy["rules"]
        priorities = [r["rulePriority"] for r in rules]
        assert priorities == sorted(set(priorities))  # unique, ascending (no replace churn)
        assert rules[-1]["selection"]["tagStatus"] == "any"  # `any` must come last
        assert [r["selection"]["tagStatus"] for r in rules].count("untagged") == 1
        for rule in rules:
            selection = rule["selection"]
            assert rule["action"] == {"type": "expire"}
            if selection["tagStatus"] == "tagged":  # a pattern list, at most 4 wildcards each
                assert all(p.count("*") <= 4 for p in selection["tagPatternList"])
            else:
                assert "tagPatternList" not in selection and "tagPrefixList" not in selection
    pin = lifecycle_policy(14, 50, 10, in_service=DIGEST)["rules"][0]["selection"]
    assert pin["tagPatternList"] == ["llmcloud-serving-" + "a" * 64]
    assert pin["countNumber"] == 1


def test_the_stack_pins_its_own_image_only():
    image = f"{HOST}/{OWN}@{DIGEST}"
    resources, _ = declared("dev", image=image)
    policy = json.loads(one(resources, "aws:ecr/lifecyclePolicy:LifecyclePolicy")
                        .inputs["policy"])
    assert policy["rules"][0]["selection"]["tagPatternList"] == [serving_tag(DIGEST)]
    elsewhere, _ = declared("dev", image=f"{HOST}/another/repo@{DIGEST}")
    policy = json.loads(one(elsewhere, "aws:ecr/lifecyclePolicy:LifecyclePolicy")
                        .inputs["policy"])
    assert serving_tag(DIGEST) not in json.dumps(policy)
    assert policy["rules"][0]["selection"]["tagPatternList"] == ["llmcloud-serving-*"]


def test_which_images_are_the_repository_s():
    assert in_service_digest(f"{HOST}/{OWN}@{DIGEST}", OWN) == DIGEST
    assert in_service_digest(f"{HOST}/{OWN}:v1@{DIGEST}", OWN) == DIGEST
    assert in_service_digest(f"{HOST}/other@{DIGEST}", OWN) is None
    assert in_service_digest(f"ghcr.io/{OWN}@{DIGEST}", OWN) is None
    assert in_service_digest(None, OWN) is None
    assert ecr_image(f"{HOST}/{OWN}@{DIGEST}").region == REGION


# -- the tag, against moto's ECR and a stubbed client -------------------------------------

@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName=OWN, imageTagMutability="IMMUTABLE")
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                               "config": {"digest": "sha256:" + "c" * 64, "size": 7},
                               "layers": []})
        pushed = client.put_image(repositoryName=OWN, imageManifest=manifest,
                                  imageTag="v1-abc123")["image"]["imageId"]["imageDigest"]
        yield client, pushed


def _tags(client, digest: str) -> set[str]:
    found = client.describe_images(repositoryName=OWN, imageIds=[{"imageDigest": digest}])
    return set(found["imageDetails"][0]["imageTags"])


def test_the_image_in_service_gets_its_serving_tag_once(ecr):
    client, digest = ecr
    image = EcrImage(client.describe_registry()["registryId"], REGION, OWN, digest)
    assert tag_in_service(client, image) is None
    assert _tags(client, digest) == {"v1-abc123", serving_tag(digest)}
    assert tag_in_service(client, image) is None  # a re-run finds it there: success
    assert _tags(client, digest) == {"v1-abc123", serving_tag(digest)}


def test_an_image_not_in_the_repository_is_not_in_the_registry(ecr):
    client, _ = ecr
    account = client.describe_registry()["registryId"]
    with pytest.raises(NotInRegistry) as missing:
        tag_in_service(client, EcrImage(account, REGION, OWN, DIGEST))
    assert missing.value.answer.startswith("ImageNotFound")
    with pytest.raises(NotInRegistry) as gone:
        tag_in_service(client, EcrImage(account, REGION, "llm-dev/none-server", DIGEST))
    assert gone.value.answer.startswith("RepositoryNotFoundException")


def test_ecrs_image_not_found_error_is_not_in_the_registry():
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="k",
                          aws_secret_access_key="s")
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_image", "ImageNotFoundException", "no such image")
        with pytest.raises(NotInRegistry) as missing:
            tag_in_service(client, ecr_image(f"{HOST}/{OWN}@{DIGEST}"))
    assert missing.value.answer == "ImageNotFoundException: no such image"


def test_an_image_that_cannot_be_read_is_a_note_saying_it_was_not_checked():
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="k",
                          aws_secret_access_key="s")
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_image", "AccessDeniedException",
                              "not authorized to perform: ecr:BatchGetImage")
        note = tag_in_service(client, ecr_image(f"{HOST}/{OWN}@{DIGEST}"))
    assert note.startswith("note:") and "nor checked to be in the repository" in note
    assert "AccessDeniedException" in note and "ecr:BatchGetImage" in note


def test_a_refused_tag_is_a_note_naming_the_permission():
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="k",
                          aws_secret_access_key="s")
    image = ecr_image(f"{HOST}/{OWN}@{DIGEST}")
    with Stubber(client) as stub:
        stub.add_response("batch_get_image", {"images": [{
            "imageId": {"imageDigest": DIGEST}, "imageManifest": "{}",
            "imageManifestMediaType": MANIFEST_TYPE}], "failures": []})
        stub.add_client_error("put_image", "AccessDeniedException",
                              "not authorized to perform: ecr:PutImage")
        note = tag_in_service(client, image)
        stub.assert_no_pending_responses()
    assert "AccessDeniedException" in note and "ecr:PutImage" in note
    assert "nor checked" not in note  # ECR gave the image: it is there
    assert serving_tag(DIGEST) in note


# -- the hook: `up` tags the spec's image before the update -------------------------------

def _check_image(ctx: StackContext) -> None:
    """What `up` does with the image it deploys (`check_image`)."""
    AwsProvider().check_image(ctx, ctx.spec.image)


@pytest.mark.registry_tags
def test_up_tags_the_image_it_deploys_from_the_stack_s_repository(ecr, tmp_path: Path,
                                                                   monkeypatch, capsys):
    client, digest = ecr
    account = client.describe_registry()["registryId"]
    asked: list[str] = []
    monkeypatch.setattr(AwsProvider, "registry_client",
                        staticmethod(lambda region: asked.append(region) or client))
    for kind in ("instances", "sagemaker"):  # both pull the image from the same repository
        compute = {"kind": kind} if kind == "instances" else {
            "kind": kind, "instance_type": "ml.g5.xlarge"}
        spec = aws_spec(region=REGION, image=f"{account}.dkr.ecr.{REGION}.amazonaws.com/"
                                             f"{OWN}@{digest}", compute=compute)
        _check_image(StackContext(tmp_path, "dev", spec))
    assert asked == [REGION, REGION]
    assert serving_tag(digest) in _tags(client, digest)
    assert capsys.readouterr().err == ""
    # an image of another repository, of a same-named one in another region, or none (a
    # first up), is left alone
    elsewhere = f"{account}.dkr.ecr.eu-west-3.amazonaws.com/{OWN}@{digest}"
    assert REGION != "eu-west-3"
    for image in (f"{HOST}/another/repo@{DIGEST}", elsewhere, None):
        _check_image(StackContext(tmp_path, "dev", aws_spec(region=REGION,
                                                                       image=image)))
    assert asked == [REGION, REGION]


@pytest.mark.registry_tags
def test_up_goes_on_with_a_note_when_the_tag_is_refused(tmp_path: Path, monkeypatch, capsys):
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="k",
                          aws_secret_access_key="s")
    monkeypatch.setattr(AwsProvider, "registry_client", staticmethod(lambda region: client))
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_image", "AccessDeniedException", "no ecr:BatchGetImage")
        _check_image(StackContext(tmp_path, "dev", aws_spec(
            region=REGION, image=f"{HOST}/{OWN}@{DIGEST}")))
    assert "note: the image in service was not tagged" in capsys.readouterr().err


@pytest.mark.registry_tags
def test_up_refuses_an_image_its_repository_does_not_hold(ecr, tmp_path: Path, monkeypatch):
    client, _ = ecr
    account = client.describe_registry()["registryId"]
    monkeypatch.setattr(AwsProvider, "registry_client", staticmethod(lambda region: client))
    image = f"{account}.dkr.ecr.{REGION}.amazonaws.com/{OWN}@{DIGEST}"
    with pytest.raises(DeploymentError) as refused:
        _check_image(StackContext(tmp_path, "dev", aws_spec(region=REGION,
                                                                       image=image)))
    error = refused.value
    assert error.exit_code == 1
    assert error.message == f"the image {image} is not in the stack's ECR repository"
    assert "ImageNotFound" in error.context
    assert "llmcloud image push --provider aws --stack dev" in error.hint
