"""DeepFashion In-shop Clothes Retrieval, as the pose-transfer literature distributes it.

Liu et al., "DeepFashion: Powering Robust Clothes Recognition and Retrieval with Rich
Annotations", CVPR 2016; the split and keypoints of Zhu et al., "Progressive Pose Attention
Transfer for Person Image Generation", CVPR 2019 (used by GFLA and by Lu et al., AAAI 2022).
"""
from __future__ import annotations

import re
from typing import Optional

from etils import epath

from tfrf.datasets import people_common

_IDENTITY = re.compile(r"id(\d{8})")


class DeepFashionInShop(people_common.PeopleBuilder):
    """DeepFashion In-shop person images with OpenPose-18 keypoints, grouped by item identity."""

    DESCRIPTION = (
        "DeepFashion In-shop Clothes Retrieval person images (train/test split of the "
        "pose-transfer literature, identity-disjoint) with OpenPose-18 keypoints (y, x) in the "
        "stored image's pixels, -1 for a missing point. Images without a shoulder or a hip are "
        "kept as sources but are not used as targets (target_ok = False)."
    )
    pkg_dir_path = epath.Path(__file__).parent  # README.md and CITATIONS.bib live here
    HOMEPAGE = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"
    RAW_SIZE = (256, 176)
    RAW_SPLITS = {
        "train": people_common.RawSplit("fashion/train", "fasion-annotation-train.csv"),
        "test": people_common.RawSplit("fashion/test", "fasion-annotation-test.csv"),
    }
    BUILDER_CONFIGS = [
        people_common.PeopleConfig(
            name="256x256",
            description="256x256 images (the paper's size): the 176-px-wide images padded with white.",
            height=256, width=256, fit_mode="pad",
        ),
        people_common.PeopleConfig(
            name="256x176", description="The distributed 256x176 images, unchanged.",
            height=256, width=176, fit_mode="stretch",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    DeepFashion is licensed for non-commercial research and must be downloaded by hand.
    Get the In-shop Clothes Retrieval images and the pose-transfer split and keypoints (the
    `fashion` folders and `fasion-annotation-*.csv` files distributed with Pose-Transfer /
    GFLA), then arrange the manual directory as:

        <manual_dir>/fashion/train/fashionWOMENDressesid0000002601_1front.jpg ...  (256x176, h x w)
        <manual_dir>/fashion/test/...
        <manual_dir>/fasion-annotation-train.csv   (header name:keypoints_y:keypoints_x)
        <manual_dir>/fasion-annotation-test.csv

    The identity of an image is the 8 digits after `id` in its name.
    """

    @classmethod
    def identity_of(cls, name: str) -> Optional[int]:
        match = _IDENTITY.search(name)
        if match is None:
            raise ValueError(f"DeepFashion image name {name!r} has no identity (id followed by 8 digits)")
        return int(match.group(1))
