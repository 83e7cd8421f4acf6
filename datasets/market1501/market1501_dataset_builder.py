"""Market-1501 person re-identification images, as the pose-transfer literature distributes them.

Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015; the keypoints of
Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019.
"""
from __future__ import annotations

from typing import Optional

from etils import epath

from tfrf.datasets import people_common

# Identity -1 marks junk detections, 0000 distractors: neither is a person of the benchmark.
JUNK_IDENTITIES = ("-1", "0000")


class Market1501(people_common.PeopleBuilder):
    """Market-1501 person images with OpenPose-18 keypoints, grouped by person identity."""

    DESCRIPTION = (
        "Market-1501 bounding-box images (train/test, identity-disjoint; junk -1 and distractor "
        "0000 images excluded) with OpenPose-18 keypoints (y, x) in the stored image's pixels, -1 "
        "for a missing point. Images without a shoulder or a hip are kept as sources but are not "
        "used as targets (target_ok = False)."
    )
    pkg_dir_path = epath.Path(__file__).parent  # README.md and CITATIONS.bib live here
    HOMEPAGE = "https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html"
    RAW_SIZE = (128, 64)
    RAW_SPLITS = {
        "train": people_common.RawSplit("bounding_box_train", "market-annotation-train.csv"),
        "test": people_common.RawSplit("bounding_box_test", "market-annotation-test.csv"),
    }
    BUILDER_CONFIGS = [
        people_common.PeopleConfig(
            name="128x64", description="The distributed 128x64 (h x w) images.",
            height=128, width=64, fit_mode="stretch",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Market-1501 is licensed for research and must be downloaded by hand. Extract the
    `bounding_box_train` and `bounding_box_test` folders of Market-1501-v15.09.15 and the
    keypoint files of the pose-transfer literature (`market-annotation-*.csv`, distributed
    with Pose-Transfer / GFLA) into the manual directory:

        <manual_dir>/bounding_box_train/0002_c1s1_000451_03.jpg ...  (128x64, h x w)
        <manual_dir>/bounding_box_test/...
        <manual_dir>/market-annotation-train.csv   (header name:keypoints_y:keypoints_x)
        <manual_dir>/market-annotation-test.csv

    The identity of an image is the first `_`-separated field of its name; -1 (junk) and
    0000 (distractors) are excluded.
    """

    @classmethod
    def identity_of(cls, name: str) -> Optional[int]:
        field = name.split("_", 1)[0]
        if field in JUNK_IDENTITIES:
            return None
        if not field.isdigit():
            raise ValueError(f"Market-1501 image name {name!r} does not start with a numeric identity")
        return int(field)
