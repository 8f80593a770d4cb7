"""llmcloud.cli."""
