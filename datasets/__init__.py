"""TFDS builders, one folder per dataset (installed as ``tfrf.datasets``).

Importing this package registers all five builders with TFDS, so that `tfds.builder(name)` and
`tfds.load(name, ...)` find them:

| name | class |
|---|---|
| deep_fashion_in_shop | `tfrf.datasets.deepfashion.DeepFashionInShop` |
| market1501 | `tfrf.datasets.market1501.Market1501` |
| shapenet_chairs | `tfrf.datasets.shapenet_chairs.ShapenetChairs` |
| kitti_odometry | `tfrf.datasets.kitti.KittiOdometry` |
| voxceleb2 | `tfrf.datasets.voxceleb2.Voxceleb2` |
"""
from tfrf.datasets.deepfashion import DeepFashionInShop
from tfrf.datasets.kitti import KittiOdometry
from tfrf.datasets.market1501 import Market1501
from tfrf.datasets.shapenet_chairs import ShapenetChairs
from tfrf.datasets.voxceleb2 import Voxceleb2

BUILDERS = {
    "deep_fashion_in_shop": DeepFashionInShop,
    "market1501": Market1501,
    "shapenet_chairs": ShapenetChairs,
    "kitti_odometry": KittiOdometry,
    "voxceleb2": Voxceleb2,
}

__all__ = ["BUILDERS", "DeepFashionInShop", "KittiOdometry", "Market1501", "ShapenetChairs", "Voxceleb2"]
