"""Networks: per-source extractors, the target image predictor and the generator."""
from tfrf.models.discriminator import Discriminator
from tfrf.models.extractors import FlowConfidenceExtractor, FlowHeads, SourceAppearanceExtractor
from tfrf.models.generator import Generator, validate_inputs
from tfrf.models.predictor import TargetImagePredictor

__all__ = [
    "Discriminator",
    "FlowConfidenceExtractor",
    "FlowHeads",
    "Generator",
    "SourceAppearanceExtractor",
    "TargetImagePredictor",
    "build_generator",
    "validate_inputs",
]


def build_generator(config):
    """The generator network of `config.architecture` ("rf": `Generator`; GFLA joins here)."""
    architecture = getattr(config, "architecture", "rf")
    if architecture == "rf":
        return Generator(config)
    raise ValueError(f"unknown ModelConfig.architecture {architecture!r}")
