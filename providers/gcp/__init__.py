"""llmcloud.providers.gcp."""
