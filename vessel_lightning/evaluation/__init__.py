"""Evaluation at native resolution: metrics, the vessel-eval command, overlays."""
