"""Pose representations: every pose becomes a map [H, W, Cp] (see DESIGN.md).

- `tfrf.pose.keypoints`: OpenPose-18 keypoints, CSV annotations, Gaussian heatmaps (18 ch).
- `tfrf.pose.views`: view one-hots (21 ch) and 6-DOF camera poses (6 ch).
- `tfrf.pose.face`: 68 facial landmarks, face crops and RGB landmark drawings (3 ch).
"""
