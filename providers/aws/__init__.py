"""llmcloud.providers.aws."""
