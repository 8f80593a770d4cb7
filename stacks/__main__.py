"""The entry point `Pulumi.yaml` names: `pulumi up` in this folder runs the llmcloud program."""

from llmcloud.stacks.program import main

main()
