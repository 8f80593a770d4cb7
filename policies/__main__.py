"""The Pulumi policy pack: every llmcloud check as a mandatory policy.

Resource checks become `ResourceValidationPolicy`s (one per check id); checks that span
resources (a bucket and its separate settings) run in one `StackValidationPolicy`. Policy
packs see property names as the engine does (camelCase), exactly like the checks expect.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from llmcloud.policies import Check, Resource, all_checks


def _policy_name(check_id: str) -> str:
    return check_id.lower().replace("_", "-")


def resource_policy(check_id: str, checks: list[Check]) -> ResourceValidationPolicy:
    """One policy for every registration of `check_id` (it may cover several types)."""
    def validate(args, report_violation) -> None:
        for check in checks:
            if args.resource_type in check.types and check.fn is not None:
                message = check.fn(args.props)
                if message:
                    report_violation(f"{check_id}: {message}")

    return ResourceValidationPolicy(name=_policy_name(check_id),
                                    description=checks[0].title, validate=validate)


def stack_policy(checks: list[Check]) -> StackValidationPolicy:
    """The checks that need every resource at once."""
    def validate(args, report_violation) -> None:
        resources = [Resource(type=r.resource_type, name=r.name, inputs=r.props,
                              id=r.props.get("id"), outputs=r.props)
                     for r in args.resources]
        for check in checks:
            for result in check.stack_fn(resources) if check.stack_fn else ():
                if not result.passed:
                    report_violation(f"{result.id} ({result.resource}): {result.message}")

    return StackValidationPolicy(name="llmcloud-cross-resource",
                                 description="buckets and their separate settings",
                                 validate=validate)


def policies() -> list:
    """Every llmcloud check as a policy."""
    by_id: dict[str, list[Check]] = {}
    for check in all_checks():
        if check.fn is not None:
            by_id.setdefault(check.id, []).append(check)
    stack_checks = [check for check in all_checks() if check.stack_fn is not None]
    return [*(resource_policy(i, c) for i, c in sorted(by_id.items())),
            stack_policy(stack_checks)]


if __name__ == "__main__":
    PolicyPack(name="llmcloud", enforcement_level=EnforcementLevel.MANDATORY,
               policies=policies())
