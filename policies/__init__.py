"""llmcloud.policies."""
