"""Networks shared by training, evaluation and serving (no training code here).

``networks`` (PyTorch: building, saving, loading) and ``onnx`` (the ONNX export, its check, and ONNX Runtime as a
plain array function) are imported by name; importing this package imports neither, so the torch-free serving
path can use ``vessel_lightning.models.onnx``.
"""
