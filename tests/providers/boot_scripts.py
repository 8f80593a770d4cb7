"""Each cloud's real boot script for a server, rendered with fixed test values."""

from __future__ import annotations

DIGEST = "@sha256:" + "a" * 64


def boot_script(cloud: str, *, model_uri: str, port: int) -> str:
    """The boot script (AWS user data, GCP startup script, Azure custom data) of a server
    of version v1 of ``model_uri`` listening on ``port``."""
    common = dict(model_uri=model_uri, model_version="v1", port=port)
    if cloud == "aws":
        from llmcloud.providers.aws.userdata import ServerLaunch, render_user_data
        return render_user_data(ServerLaunch(
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/m" + DIGEST,
            region="us-east-1", log_group="/llmcloud/dev/server", asg_name="g", **common))
    if cloud == "gcp":
        from llmcloud.providers.gcp.startup import ServerLaunch, render_startup_script
        return render_startup_script(ServerLaunch(
            image="us-central1-docker.pkg.dev/p/r/server" + DIGEST, project="p",
            keys_secret="k", **common))
    from llmcloud.providers.azure.cloud_init import ServerLaunch, render_custom_data
    return render_custom_data(ServerLaunch(
        image="llmdev1.azurecr.io/m-server" + DIGEST, identity_client_id="c", region="eastus",
        **common))
