"""V-JEPA 2 models."""
from vjepa2.models.ac_predictor import ActionConditionedPredictor
from vjepa2.models.attentive_probe import AttentiveProbe
from vjepa2.models.image_encoder import ImageEncoder
from vjepa2.models.masked_predictor import MaskedPredictor
from vjepa2.models.video_encoder import VideoEncoder

__all__ = ["ActionConditionedPredictor", "AttentiveProbe", "ImageEncoder", "MaskedPredictor",
           "VideoEncoder"]
