"""llmcloud.providers.azure."""
