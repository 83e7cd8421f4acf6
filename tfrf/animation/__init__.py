"""Animation: K source photos and a driving sequence -> a video, one generated frame per driving frame.

- `tfrf.animation.face`: face animation with the exported TFLite face model (`animate`).
- `tfrf.animation.person`: person animation with a keypoint generator (`animate_person`), GFLA's
  second application.
- `tfrf.animation.video`: the per-frame loop both run (`run_animation`), `VideoWriter`, `read_video`.
"""
