"""tfrf: pose-guided image generation from misaligned sources via residual flow based correction.

Lu et al., AAAI 2022, with GFLA (Ren et al., CVPR 2020) as the single-source baseline.
Sub-packages load on first use, so `import tfrf` stays light until TensorFlow is needed.
"""
import importlib

from tfrf.config import PRESETS, ModelConfig

__version__ = "0.1.0"

_LAZY_SUBMODULES = (
    "ops", "layers", "models", "losses", "training", "data", "metrics", "pose",
    "datasets", "serving", "export", "visualize",
)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"tfrf.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfrf' has no attribute {name!r}")


__all__ = ["ModelConfig", "PRESETS", "__version__", *_LAZY_SUBMODULES]
