"""Augmentation, inference and checkpoint helpers shared by the scripts."""
