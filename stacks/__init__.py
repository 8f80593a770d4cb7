"""llmcloud.stacks."""
