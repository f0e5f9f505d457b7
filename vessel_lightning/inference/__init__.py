"""Inference: the model contract and the one predictor shared by evaluation, batch prediction and the API."""
