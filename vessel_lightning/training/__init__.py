"""Training: the LightningModule, losses, callbacks, MLflow tracking and the vessel-train entry point.

Inference code must not import this package; it uses ``vessel_lightning.models``.
"""
