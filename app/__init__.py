"""The serving application: a FastAPI service for the registered vessel model (``vessel-serve``).

``settings`` reads the knobs (pydantic-settings), ``decode`` turns untrusted upload bytes into RGB arrays,
``model_manager`` loads the alias, builds its backend (``vessel_lightning.inference.backends``) and swaps versions
without dropping requests, ``server`` builds the app (``create_app``) from the routers in ``routes`` and their
``dependencies`` on ``app.state``, ``pipeline`` is the work a request does in a worker of ``pool``, and ``schemas``
documents the bodies for ``/docs``.
"""
