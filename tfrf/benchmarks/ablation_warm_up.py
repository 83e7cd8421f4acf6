"""Stage 1 of the ablation (`tfrf.benchmarks.ablation`), shared by every residual-flow variant.

- "recipe": the demo recipe's stage 1 on L_flow (a `TrainingRun` in `OUT/flow_warmup`, resumable).
- "labels": the flow extractor trained on the answer, the renderer's flow between the cameras the
  pose labels name (`tfrf.benchmarks.flow_ceiling.TruthTrainer`; on misaligned data the nominal
  cameras'), saved as the stage-1 checkpoint stage 2 starts from
  (`tfrf.training.runner.initialise_from_flow_stage`). A probe, not a recipe.

`OUT/flow_warmup/warm_up.json` records a "labels" warm-up; a folder trained by one kind is
refused to the other.
"""
from __future__ import annotations

import json
import os
from typing import Dict

WARM_UPS = ("recipe", "labels")
WARM_UP_FILE = "warm_up.json"  # in OUT/flow_warmup: which warm-up trained it (absent: the recipe's)


def check_warm_up(folder: str, kind: str) -> None:
    """Refuse to reuse a warm-up folder that another kind trained (ValueError naming both)."""
    path = os.path.join(folder, WARM_UP_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as stream:
                found = json.load(stream)["warm_up"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is damaged ({error!r}); remove {folder} to train its stage 1 again") from None
    else:
        found = "recipe" if os.path.isdir(os.path.join(folder, "checkpoints", "flow")) else None
    if found is not None and found != kind:
        raise ValueError(f"{folder} holds a stage 1 of --warm-up {found}, not {kind}; give another --out")


def warm_up(kind: str, config, data, folder: str, verbose: int) -> Dict:
    """Train stage 1 of `kind` for `config.flow_steps` steps in `folder` (once; a finished one is
    kept) on `data.train`; returns `{"flow": seconds, "flow_steps": steps trained}`.

    `config` is the full model's stage-2 config of the ablation."""
    if kind not in WARM_UPS:
        raise ValueError(f"--warm-up must be one of {WARM_UPS}, got {kind!r}")
    check_warm_up(folder, kind)
    if kind == "labels":
        return _labels(config, data, folder, verbose)
    from tfrf.training.config import KERAS_ADAM_EPSILON, TrainConfig
    from tfrf.training.run import TrainingRun

    # Stage 1 has no residual flow, no saturation hinge (recorded as 0 whatever stage 2 takes), and
    # its generator Adam keeps Keras's epsilon and the demo's rate: its run is the same whichever
    # --flow-loss-on, --full-generator-epsilon, --full-learning-rate and --saturation (one folder
    # serves them all).
    config = config.replace(flow_loss_on="base", full_generator_epsilon=KERAS_ADAM_EPSILON,
                            learning_rate=TrainConfig.preset("demo").learning_rate, loss_weights={"saturation": 0.0})
    run = TrainingRun(config, data, folder, verbose=verbose)
    return timings(run.train(("flow",)))


def _labels(config, data, folder: str, verbose: int) -> Dict:
    import tensorflow as tf

    from tfrf.benchmarks.flow_ceiling import TruthTrainer
    from tfrf.io import atomic_write_text
    from tfrf.training.networks import create_networks

    directory = os.path.join(folder, "checkpoints", "flow")
    steps = int(config.flow_steps)
    if tf.train.latest_checkpoint(directory):
        return {"flow": 0.0, "flow_steps": 0}
    generator = create_networks(config).generator
    trainer = TruthTrainer(generator, config, data.train, steps, batch_size=config.batch_size, seed=config.seed,
                           verbose=1 if verbose else 0)
    trainer.train_to(steps)
    checkpoint = tf.train.Checkpoint(generator=tf.train.Checkpoint(flow_extractor=generator.flow_extractor))
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(folder, WARM_UP_FILE), json.dumps({"warm_up": "labels", "steps": steps}) + "\n")
    tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save(checkpoint_number=steps)
    return {"flow": trainer.seconds, "flow_steps": steps}


def timings(results: Dict) -> Dict:
    """`{stage: seconds, f"{stage}_steps": steps trained}` of `TrainingRun.train`'s results."""
    spent = {}
    for stage, result in results.items():
        spent[stage] = result["seconds"]
        spent[f"{stage}_steps"] = result["end_step"] - result["start_step"]
    return spent
