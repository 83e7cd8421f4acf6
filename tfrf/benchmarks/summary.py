"""Model size and cost of `tfrf summary`: the layer table and parameter counts of a generator.

Any generator of `tfrf.models.build_generator` (the residual-flow model, GFLA); its FLOPs per
generated image are `tfrf.benchmarks.flops.generator_flops`.
"""
from __future__ import annotations

from typing import List, Tuple

from tfrf.config import ModelConfig


def built_generator(config: ModelConfig, num_sources: int = 1):
    """The generator of `config.architecture`, its weights created by one call on zero inputs."""
    from tfrf.models import build_generator

    generator = build_generator(config)
    limit = getattr(generator, "max_sources", None)
    generator(generator.dummy_inputs(1, num_sources if limit is None else min(num_sources, limit)))
    return generator


def component_table(generator) -> List[Tuple[str, str, int]]:
    """(name, class, parameter count) of the generator's components and their direct sublayers."""
    rows = []
    for component in (generator.source_extractor, generator.flow_extractor, generator.predictor):
        rows.append((component.name, type(component).__name__, component.count_params()))
        for layer in component._flatten_layers(include_self=False, recursive=False):
            rows.append((f"  {layer.name}", type(layer).__name__, layer.count_params()))
    return rows


def format_table(rows: List[Tuple[str, str, int]]) -> str:
    width = max(len(name) for name, _, _ in rows) + 2
    lines = [f"{'layer':<{width}}{'type':<28}{'params':>12}", "-" * (width + 40)]
    lines += [f"{name:<{width}}{kind:<28}{params:>12,}" for name, kind, params in rows]
    return "\n".join(lines)
