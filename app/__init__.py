"""The serving application: a FastAPI service for the registered vessel model (``vessel-serve``).

``settings`` reads the knobs, ``decode`` turns untrusted upload bytes into RGB arrays, ``model_manager`` loads the
alias, builds its backend (``vessel_lightning.inference.backends``: PyTorch or ONNX Runtime) and swaps versions
without dropping requests, and ``server`` wires the HTTP API.
"""
