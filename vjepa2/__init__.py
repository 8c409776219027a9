"""V-JEPA 2 world model in Keras 3: video encoder, masked and action-conditioned predictors."""

__version__ = "0.1.0"
