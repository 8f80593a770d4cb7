"""Security checks shared by `llmcloud plan`, the tests and the Pulumi policy pack."""

from llmcloud.policies.core import (
    Check,
    CheckResult,
    Resource,
    all_checks,
    resource_check,
    run_checks,
    stack_check,
)

__all__ = ["Check", "CheckResult", "Resource", "all_checks", "resource_check", "run_checks",
           "stack_check"]
