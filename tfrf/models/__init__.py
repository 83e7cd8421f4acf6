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
    "build_discriminator",
    "build_generator",
    "rebuild_generator",
    "validate_inputs",
]

# The networks of each architecture (`ModelConfig.architecture`) and discriminator kind
# (`TrainConfig.discriminator`).
GENERATORS = {"rf": Generator, "gfla": GFLAGenerator}
DISCRIMINATORS = {"rf": Discriminator, "gfla": GFLADiscriminator}


def build_generator(config, impl: str = "default"):
    """The generator network of `config.architecture` ("rf" -> `Generator`, "gfla" ->
    `GFLAGenerator`), not yet built, its layers tracing `impl` (`tfrf.layers.impl`)."""
    architecture = getattr(config, "architecture", "rf")
    if architecture not in GENERATORS:
        raise ValueError(f"unknown ModelConfig.architecture {architecture!r}; choose one of {sorted(GENERATORS)}")
    return GENERATORS[architecture](config, impl=impl)


def rebuild_generator(generator, impl: str):
    """A new generator of `generator.config` built with `impl`, holding a copy of its weights."""
    if getattr(generator, "impl", "default") == impl:
        return generator
    rebuilt = build_generator(generator.config, impl=impl)
    rebuilt(rebuilt.dummy_inputs(1, 1), training=False)
    rebuilt.set_weights(generator.get_weights())
    return rebuilt


def build_discriminator(model_config, kind: str = "rf", num_blocks=None):
    """The discriminator `kind` ("rf": the paper's `Discriminator` for `model_config`; "gfla":
    `GFLADiscriminator` with `num_blocks` residual down blocks, None for its default), not yet built."""
    if kind not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {kind!r}; choose one of {sorted(DISCRIMINATORS)}")
    if kind == "rf":
        return Discriminator(model_config)
    return GFLADiscriminator(**({} if num_blocks is None else {"num_blocks": num_blocks}))
