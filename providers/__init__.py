"""llmcloud.providers."""
