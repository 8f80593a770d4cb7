"""Identity: the servers' own service account, and exactly the grants they need."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

#: project-wide roles: the servers write their logs and their in-flight metric
PROJECT_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
BUCKET_ROLE = "roles/storage.objectViewer"
REPOSITORY_ROLE = "roles/artifactregistry.reader"


@dataclass
class IdentityArgs:
    """What the servers may read: one bucket and one repository, in one project."""

    account_id: str
    project: pulumi.Input[str]
    bucket: pulumi.Input[str]
    repository: pulumi.Input[str]
    repository_location: str


class Identity(pulumi.ComponentResource):
    """A dedicated service account (never the default compute one), granted object read on
    the model bucket only, reader on the stack's repository only, and log and metric writer
    on the project. Reading the API key hashes is granted by the gateway that owns them."""

    account: gcp.serviceaccount.Account
    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa", account_id=args.account_id, project=args.project,
            display_name="llmcloud model servers",
            description="runs the model server; reads its bucket and repository only",
            opts=child)
        self.email = self.account.email
        self.member = self.account.email.apply(lambda email: f"serviceAccount:{email}")
        gcp.storage.BucketIAMMember(f"{name}-bucket-read", bucket=args.bucket,
                                    role=BUCKET_ROLE, member=self.member, opts=child)
        gcp.artifactregistry.RepositoryIamMember(
            f"{name}-repo-read", repository=args.repository,
            location=args.repository_location, project=args.project, role=REPOSITORY_ROLE,
            member=self.member, opts=child)
        for role in PROJECT_ROLES:
            gcp.projects.IAMMember(f"{name}-{role.split('/')[1].replace('.', '-').lower()}",
                                   project=args.project, role=role, member=self.member,
                                   opts=child)
        self.register_outputs({"email": self.email})
