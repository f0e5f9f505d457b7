"""The serving application: a FastAPI service for the registered vessel model (``vessel-serve``).

``settings`` reads the knobs, ``decode`` turns untrusted upload bytes into RGB arrays, ``backends`` runs the
network in PyTorch or ONNX Runtime, ``model_manager`` loads the alias and swaps versions without dropping
requests, and ``server`` wires the HTTP API.
"""
