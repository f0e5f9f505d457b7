"""vessel-lightning: blood-vessel segmentation for slit-lamp and fundus eye photographs."""

__version__ = "0.1.0"
