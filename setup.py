"""Install tfrf: the library plus its dataset builders, serving and export sub-packages.

`datasets/`, `serving/` and `export/` live at the top of the repository but install as
`tfrf.datasets`, `tfrf.serving` and `tfrf.export` (never as top-level packages: a top-level
`datasets` would shadow the HuggingFace package of that name).
"""
from setuptools import find_packages, setup

# Pins that resolve together on Python 3.11.
INSTALL_REQUIRES = [
    "tensorflow==2.15.1",
    "tensorflow-addons==0.23.0",  # last release supporting TF <2.16: pins TF to 2.15
    "keras-cv==0.9.0",
    "tensorflow-datasets>=4.9.4,<4.10",
    # Newer tensorflow-metadata wheels are generated for protobuf>=5 and break
    # `import tensorflow_datasets` / `keras_cv` under TF 2.15's protobuf<5.
    "tensorflow-metadata==1.15.0",
    "protobuf>=3.20.3,<5",
    "tensorflow-serving-api==2.15.1",
    "numpy>=1.23,<2",
    "pillow",
    "importlib_resources",  # tfds download_and_prepare on Python 3.11
    "h5py",
    "tqdm",
    # Reading driving videos and writing MP4 (tfrf animate, the VoxCeleb2 builder).
    "imageio==2.38.1",
    "imageio-ffmpeg==0.8.1",
]

EXTRAS_REQUIRE = {
    # scikit-image: a second, test-only reference for the Mask-LPIPS mask (the library never imports it).
    # selenium drives Debian's headless Chromium in the `tfrf web` browser test (.ci/run installs
    # chromium, chromium-driver and the page's npm assets).
    "test": ["pytest>=7", "pytest-timeout", "pytest-xdist", "scikit-image<0.25", "selenium>=4.20"],
    # MediaPipe carries the pose and face-mesh TFLite models in its wheel (offline).
    # Pinned so that numpy stays <2: an unpinned jax pulls numpy 2 and breaks TF 2.15.
    "mediapipe": [
        "mediapipe==0.10.14",
        "jax==0.4.30",
        "jaxlib==0.4.30",
        "scipy<1.14",
        "opencv-contrib-python==4.10.0.84",
        "matplotlib<3.10",
    ],
    "video": ["imageio==2.38.1", "imageio-ffmpeg==0.8.1"],
    "gpu": ["tensorflow[and-cuda]==2.15.1"],
    # The on-device TFLite runtime (`tfrf.export.tflite.load_interpreter` prefers it): 1.4.0 is a
    # version whose wheel co-installs with TF 2.15.1 and numpy 1.26 (tested).
    "litert": ["ai-edge-litert==1.4.0"],
}
# The tests run MediaPipe on real photos: scikit-image ships sample photos of people
# (`skimage.data.astronaut()`, offline); 0.24.0 is the version tested with numpy 1.26.
EXTRAS_REQUIRE["test"] += EXTRAS_REQUIRE["mediapipe"] + ["scikit-image<0.25"]
EXTRAS_REQUIRE["all"] = sorted(
    {req for name, reqs in EXTRAS_REQUIRE.items() if name != "gpu" for req in reqs}
)


def _subpackages(prefix, directory):
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(directory)]


PACKAGE_DIR = {
    "tfrf": "tfrf",
    "tfrf.datasets": "datasets",
    "tfrf.serving": "serving",
    "tfrf.export": "export",
}
PACKAGES = (
    _subpackages("tfrf", "tfrf")
    + _subpackages("tfrf.datasets", "datasets")
    + _subpackages("tfrf.serving", "serving")
    + _subpackages("tfrf.export", "export")
)

setup(
    name="tfrf",
    version="0.1.0",
    description=(
        "Multi-source pose-guided image generation with residual flow based correction "
        "(Lu et al., AAAI 2022) and the GFLA baseline, in TensorFlow/Keras."
    ),
    python_requires=">=3.9,<3.12",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"": ["*.txt", "*.md", "*.bib", "*.config", "*.csv", "*.json", "dummy_data/**/*"],
                  "tfrf.web": ["static/*.html", "static/*.js"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["tfrf=tfrf.cli:main"]},
)
