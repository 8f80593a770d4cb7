"""The tag that keeps the image a stack serves in its ECR repository.

ECR's lifecycle rules select images by tag, never by digest, and count them by push time
(adding a tag later does not make an image newer). So before an `up` deploys an image of
the stack's own repository, the image gets a tag named after its digest,
`llmcloud-serving-<sha256 hex>`, and the repository's lifecycle policy (`registry.py`)
keeps the image carrying the in-service image's tag whatever its age, and the newest
images that carried one (for rollbacks) ahead of the count that bounds the repository.

The same `BatchGetImage` tells whether the image is in the repository at all: a digest ECR
says it does not hold is `NotInRegistry` (see `providers/image_check.py`), which `up`
refuses before anything changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llmcloud.providers.image_check import NotInRegistry

#: every serving tag begins so (the lifecycle policy's `tagPatternList` wildcard)
SERVING_PREFIX = "llmcloud-serving-"

#: what `batch_get_image` may answer with: without them, ECR refuses an image list
#: (multi-platform builds) and converts the others
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

#: `ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/REPOSITORY[:TAG]@sha256:HEX`
_ECR_IMAGE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[^@:]+)(?::[^@/]+)?@(?P<digest>sha256:[0-9a-f]{64})")

#: AWS's answers to a tag that is already there: the image is tagged, as wanted (in a
#: repository of immutable tags ECR may name either)
_ALREADY_TAGGED = frozenset({"ImageAlreadyExistsException", "ImageTagAlreadyExistsException"})
#: ECR's answers to an image that is not in the repository: `BatchGetImage`'s failure code
#: for a digest it lacks, its errors for a repository or image that does not exist
_MISSING_FAILURES = frozenset({"ImageNotFound"})
_MISSING_ERRORS = frozenset({"RepositoryNotFoundException", "ImageNotFoundException"})


@dataclass(frozen=True)
class EcrImage:
    """An image of a private ECR repository, pinned by digest."""

    account: str
    region: str
    repository: str
    digest: str


def ecr_image(image: str | None) -> EcrImage | None:
    """`image` as an ECR image pinned by digest; None for another registry, or no image."""
    found = _ECR_IMAGE.fullmatch(image or "")
    if found is None:
        return None
    return EcrImage(found["account"], found["region"], found["repository"], found["digest"])


def serving_tag(digest: str) -> str:
    """The tag of the image whose digest is `digest` while a stack serves it (81
    characters: ECR takes up to 300)."""
    return SERVING_PREFIX + digest.removeprefix("sha256:")


def in_service_digest(image: str | None, repository_name: str) -> str | None:
    """The digest of `image` when it lies in the repository `repository_name`; None for an
    image elsewhere, or none yet (a first `up`, a `plan` with the placeholder)."""
    found = ecr_image(image)
    return found.digest if found and found.repository == repository_name else None


def tag_in_service(client: Any, image: EcrImage) -> str | None:
    """Give `image` its serving tag with ECR's `client` (`BatchGetImage` for its manifest,
    `PutImage` with the tag: nothing is pulled or pushed). Returns None when the image
    carries the tag now, else a note saying why it does not and what it costs (credentials
    that may not read or tag, AWS unreachable). Raises `NotInRegistry` when ECR says the
    repository does not hold the image (or does not exist)."""
    from botocore.exceptions import BotoCoreError, ClientError

    tag = serving_tag(image.digest)
    ids = {"registryId": image.account, "repositoryName": image.repository}
    found: dict[str, Any] = {}
    try:
        found = client.batch_get_image(**ids, imageIds=[{"imageDigest": image.digest}],
                                       acceptedMediaTypes=list(MANIFEST_TYPES))
        if not found.get("images"):
            failure = (found.get("failures") or [{}])[0]
            code = failure.get("failureCode", "none")
            if code in _MISSING_FAILURES:
                raise NotInRegistry(f"{code}: {failure.get('failureReason', '')}".rstrip(": "))
            return _note(tag, f"ECR did not give the image ({code})", checked=False)
        manifest = found["images"][0]
        put = {"imageManifest": manifest["imageManifest"], "imageTag": tag,
               "imageDigest": image.digest}
        if manifest.get("imageManifestMediaType"):
            put["imageManifestMediaType"] = manifest["imageManifestMediaType"]
        client.put_image(**ids, **put)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        if code in _ALREADY_TAGGED:
            return None
        checked = bool(found.get("images"))  # refused the tag, not the read
        if code in _MISSING_ERRORS and not checked:
            raise NotInRegistry(f"{code}: {error.get('Message', '')}".rstrip(": ")) from None
        return _note(tag, f"AWS refused it: {code}: {error.get('Message', '')}".rstrip(": "),
                     checked=checked)
    except BotoCoreError as exc:
        return _note(tag, f"AWS could not be reached: {exc}",
                     checked=bool(found.get("images")))
    return None


def _note(tag: str, reason: str, *, checked: bool) -> str:
    unchecked = ("" if checked else ", nor checked to be in the repository (an image that "
                 "is not there fails the rollout only after the health checks' grace periods)")
    return (f"note: the image in service was not tagged {tag} ({reason}){unchecked}; the "
            "repository's lifecycle policy keeps it only while it is among the newest "
            "images. Give these credentials ecr:BatchGetImage and ecr:PutImage on the "
            "repository, or tag it yourself (aws ecr batch-get-image, then aws ecr put-image "
            f"--image-tag {tag})")
