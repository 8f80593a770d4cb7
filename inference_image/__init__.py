"""llmcloud.inference_image."""
