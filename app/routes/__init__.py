"""The API's routers: ``model`` (health, readiness, model info, reload), ``predict`` (the model on a photo),
``maps`` (measurements and GeoJSON of a map the client holds) and ``ui`` (the static UI at ``/``)."""
