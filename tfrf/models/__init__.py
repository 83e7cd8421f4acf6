"""Networks: per-source extractors, the target image predictor and the generator."""
from tfrf.models.discriminator import Discriminator
from tfrf.models.extractors import FlowConfidenceExtractor, FlowHeads, SourceAppearanceExtractor
from tfrf.models.gfla_discriminator import GFLADiscriminator
from tfrf.models.generator import Generator, validate_inputs
from tfrf.models.gfla import GFLAGenerator
from tfrf.models.predictor import TargetImagePredictor

__all__ = [
    "Discriminator",
    "FlowConfidenceExtractor",
    "FlowHeads",
    "GFLADiscriminator",
    "GFLAGenerator",
    "Generator",
    "SourceAppearanceExtractor",
    "TargetImagePredictor",
    "build_generator",
    "validate_inputs",
]


GENERATORS = {"rf": Generator, "gfla": GFLAGenerator}


def build_generator(config):
    """The generator network of `config.architecture`: "rf" -> `Generator`, "gfla" -> `GFLAGenerator`."""
    architecture = getattr(config, "architecture", "rf")
    if architecture in GENERATORS:
        return GENERATORS[architecture](config)
    raise ValueError(f"unknown ModelConfig.architecture {architecture!r}")
