"""Training: the LightningModule, losses, the time budget and callbacks that write files (no MLflow code of ours).

The tracked ``vessel-train`` entry point and MLflow logging live one stage up, in ``vessel_lightning.tracking``;
this package never imports it. Inference code must not import this package; it uses ``vessel_lightning.models``.
"""
