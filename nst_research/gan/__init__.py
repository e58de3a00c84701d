"""Generative adversarial networks: architectures, losses, the Lightning module, the quality metric."""
