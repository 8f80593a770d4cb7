"""llmcloud.providers.local."""
