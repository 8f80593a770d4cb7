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
  (pkg/backend/diy/lock.go), which is read here.
A local stack's controller says in its status which version a promote or rollback is
rolling its replicas to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from llmcloud.stacks.errors import BusyError, DeploymentError

LOCKS = ".pulumi/locks/"


def refuse_while_updating(prov: Any, ctx: Any, version: str) -> None:
    """BusyError (exit 75: nothing changed, run it again later) while an update of the
    stack is in progress (a local stack: while a promote or rollback rolls to `version`),
    naming who holds it when the backend says."""
    if prov.name == "local":
        rolling_to = _local_rolling_to(prov, ctx)
        if rolling_to == version:
            raise BusyError(
                f"a rollout of stack '{ctx.stack}' to {version} is in progress; {version} "
                "was not deleted",
                context="the replicas are loading it from the store",
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
    from llmcloud.providers.model_stores import open_writable_store, read_json, store_call

    address = _store_address(backend_url or "")
    if address is None:
        return None
    wanted = {stack} | ({f"organization/{project}/{stack}"} if project else set())
    try:
        store, prefix = open_writable_store(address)
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
            context=f"its lock objects are under {address}/{LOCKS}: "
                    f"{getattr(exc, 'message', exc)}",
            hint="check this machine's access to the backend's bucket, then run this again "
                 "(nothing was deleted)") from None
    return None


def _store_address(url: str) -> str | None:
    """The backend's URL as the model stores' clients name a place: file:// a folder,
    s3:// and gs:// as they are (without the query: region, profile), azblob://CONTAINER
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


def _local_rolling_to(prov: Any, ctx: Any) -> str | None:
    """The version the local stack's controller is rolling its replicas to, or None (none,
    or the stack is not running)."""
    import httpx

    client = prov._client(prov._state(ctx))
    if client is None:
        return None
    with client:
        try:
            status = client.get("/status")
        except httpx.ConnectError:
            return None
    return status.get("rolling_to") if isinstance(status, dict) else None
