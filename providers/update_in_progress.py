"""Whether an update of a stack runs right now, for the commands that must not race one:
`model delete` (a promote or rollback to the version in flight loads it from the store while
the stack's outputs still name the old one).

Where the Pulumi backend says so:
- the Pulumi Cloud lists the running update in the stack's history, its result "in-progress"
  (its REST API's UpdateInfo `result`: not-started, in-progress, succeeded, failed);
- a bucket or file backend writes its history only once an update has ended (pulumi/pulumi
  pkg/backend/diy/backend.go, `apply` calls `addToHistory` after the engine returns), and
  `pulumi stack ls` reports no progress for it; while an update runs it holds a lock object,
  `.pulumi/locks/organization/<project>/<stack>/<id>.json` (`.pulumi/locks/<stack>/...` for
  a stack of the older, unscoped layout), holding {pid, username, hostname, timestamp}
  (pkg/backend/diy/lock.go), which is read here, in an S3 bucket as the backend URL's
  query names it (region, profile, an S3-compatible endpoint).
A local stack's controller says in its status which version a promote or rollback is
rolling its replicas to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from llmcloud.inference_image.bucket_stores import aws_region, bucket_key_prefix
from llmcloud.providers.model_stores import (
    S3Writer,
    open_writable_store,
    read_json,
    store_call,
)
from llmcloud.stacks.errors import BusyError, DeploymentError

LOCKS = ".pulumi/locks/"


def refuse_while_updating(prov: Any, ctx: Any, version: str) -> None:
    """BusyError (exit 75: nothing changed, run it again later) while an update of the
    stack is in progress (a local stack: while a promote or rollback rolls to `version`),
    naming who holds it when the backend says."""
    if prov.name == "local":
        status = _local_status(prov, ctx)
        canary = status.get("canary")
        if status.get("rolling_to") == version or (
                isinstance(canary, dict) and canary.get("version") == version):
            raise BusyError(
                f"a rollout of stack '{ctx.stack}' to {version} is in progress; {version} "
                "was not deleted",
                context="the replicas are loading it from the store" if status.get(
                    "rolling_to") == version else "a promote's canary serves it, and the "
                "promote rolls the other replicas to it if the canary passes",
                hint="wait for the promote (or rollback) to end, then run this again: "
                     "llmcloud model list shows whether the stack still needs it")
        return
    engine = prov._engine(ctx, "outputs")
    holder = "" if engine.update_in_progress() else lock_holder(
        engine.backend_url(), ctx.stack, _project_name(ctx.project_dir))
    if holder is None:
        return
    raise BusyError(
        f"an update of stack '{ctx.stack}' is in progress; {version} was not deleted",
        context="a promote or rollback may be rolling the servers to it while the stack's "
                "outputs still name the version before" + (f"; {holder}" if holder else ""),
        hint=f"wait for it to end, then run this again (llmcloud status --stack {ctx.stack} "
             "shows the last update; if it died: pulumi cancel --stack "
             f"{ctx.stack} --yes)")


def lock_holder(backend_url: str | None, stack: str, project: str | None) -> str | None:
    """"taken by USER@HOST (pid N) at TIME" for a bucket or file backend's lock on `stack`
    ("" when the lock names no one), or None when it holds none, or the backend is no
    bucket or folder (the Pulumi Cloud, postgres)."""
    address = _store_address(backend_url or "")
    if address is None:
        return None
    wanted = {stack} | ({f"organization/{project}/{stack}"} if project else set())
    try:
        store, prefix = _open_backend_store(backend_url or "", address)
        for key in store_call(store.keys, prefix + LOCKS, address):
            folder, _, name = key[len(prefix + LOCKS):].rpartition("/")
            if folder in wanted and name.endswith(".json"):
                lock = store_call(lambda k: read_json(store, k), key, address)
                if not isinstance(lock, dict):
                    return ""
                return (f"taken by {lock.get('username')}@{lock.get('hostname')} (pid "
                        f"{lock.get('pid')}) at {lock.get('timestamp')}")
    except (DeploymentError, ImportError, ValueError, PermissionError) as exc:
        raise DeploymentError(
            f"could not read whether an update holds stack '{stack}' in its Pulumi backend",
            context=f"its lock objects are under {address}/{LOCKS}: {_why(exc)}",
            hint="check this machine's access to the backend's bucket, then run this again "
                 "(nothing was deleted)") from None
    return None


def _why(exc: Exception) -> str:
    """An error's message and, for one of ours, its context (the SDK's own words)."""
    context = getattr(exc, "context", None)
    return f"{getattr(exc, 'message', exc)} ({context})" if context else str(exc)


def _open_backend_store(url: str, address: str) -> tuple[Any, str]:
    """The store of the backend's bucket or folder, and its key prefix; an S3 backend as
    its URL's query says (an `endpoint=` there before the model store's AWS_ENDPOINT_URL)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.query:
        return open_writable_store(address)
    query = parse_qs(parsed.query)
    store = store_call(lambda _: BackendBucket(parsed.netloc, query), "", address)
    return store, bucket_key_prefix(address)


class BackendBucket(S3Writer):
    """A Pulumi backend's S3 bucket, its client made from the backend URL's query (Pulumi's
    gocloud.dev parameters: `region`, `profile`, `endpoint` of an S3-compatible store such
    as MinIO, `disableSSL`/`disable_https`, `s3ForcePathStyle`/`use_path_style`); what the
    query leaves out comes from the environment, as it does for Pulumi."""

    def __init__(self, bucket: str, query: dict[str, list[str]]):
        import boto3
        from botocore.config import Config

        def named(*names: str) -> str | None:
            return next((query[name][0] for name in names if query.get(name)), None)

        endpoint = named("endpoint")
        if endpoint and "://" not in endpoint:  # host[:port]: https unless SSL is off
            insecure = (named("disableSSL", "disable_https") or "").lower() == "true"
            endpoint = ("http://" if insecure else "https://") + endpoint
        path_style = (named("s3ForcePathStyle", "use_path_style") or "").lower() == "true"
        self.bucket = bucket
        self._client = boto3.Session(profile_name=named("profile")).client(
            "s3", region_name=named("region") or aws_region(os.environ),
            endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL"),
            config=Config(s3={"addressing_style": "path"}) if path_style else None)


def _store_address(url: str) -> str | None:
    """The backend's URL as the model stores' clients name a place: file:// a folder,
    s3:// and gs:// without their query (`_open_backend_store` reads it), azblob://CONTAINER
    as az://ACCOUNT/CONTAINER (the account as Pulumi takes it: `storage_account=` in the
    query, else AZURE_STORAGE_ACCOUNT); None for a backend that is no bucket or folder."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = url[len("file://"):].split("?", 1)[0]
        return str(Path(path).expanduser())
    if parsed.scheme in ("s3", "gs") and parsed.netloc:
        return f"{parsed.scheme}://{parsed.netloc}{parsed.path}"
    if parsed.scheme == "azblob" and parsed.netloc:
        account = (parse_qs(parsed.query).get("storage_account") or [None])[0] \
            or os.environ.get("AZURE_STORAGE_ACCOUNT")
        return f"az://{account}/{parsed.netloc}{parsed.path}" if account else None
    return None


def _project_name(project_dir: Path) -> str | None:
    """The Pulumi project's name (Pulumi.yaml `name`), which scopes its stacks' locks."""
    import yaml

    try:
        document = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return str(document.get("name")) if isinstance(document, dict) else None


def _local_status(prov: Any, ctx: Any) -> dict[str, Any]:
    """The local stack's controller's status (`rolling_to`: the version it rolls its
    replicas to; `canary`: the canary that runs), or {} when the stack is not running."""
    import httpx

    client = prov._client(prov._state(ctx))
    if client is None:
        return {}
    with client:
        try:
            status = client.get("/status")
        except httpx.ConnectError:  # it stopped since: nothing rolls
            return {}
        except httpx.HTTPError as exc:  # it runs but did not answer: cannot tell
            raise DeploymentError(
                f"could not ask the controller of stack '{ctx.stack}' whether a rollout runs",
                context=f"{type(exc).__name__}: {exc}",
                hint="try again in a moment (nothing was deleted)") from None
    return status if isinstance(status, dict) else {}
