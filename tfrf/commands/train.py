"""`tfrf train`: the two training stages for any preset and data source.

    tfrf train --data-dir ~/tensorflow_datasets/deep_fashion_in_shop/256x256/1.0.0 --k 2 --out runs/df
    tfrf train --data-dir ~/tensorflow_datasets --dataset market1501 --out runs/market
    tfrf train --preset synthetic --data-dir synthetic --steps 2000 --out runs/chairs
    tfrf train --preset market1501 --data-dir DIR --dry-run      # print the resolved config
    tfrf train --architecture gfla --data-dir DIR --out runs/gfla  # GFLA (the gfla_* preset of the data)
    tfrf train --strategy mirrored --batch-size 16 --mixed-precision --xla --out runs/gpus   # local GPUs
    TF_CONFIG='{"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 0}}' \
        tfrf train --strategy multi-worker --batch-size 16 --out /shared/runs/df             # on each host

`--data-dir` is a prepared TFDS version folder (the one holding dataset_info.json), a TFDS
data_dir with `--dataset NAME[/CONFIG]`, or `synthetic` for the built-in chairs. What the builder
knows (pose encoder, grouping, frame window, target eligibility) is read from the prepared data;
the preset defaults to the dataset's (deep_fashion_in_shop -> deepfashion, ...). The
resolved config is written to OUT/config.json; checkpoints every `--checkpoint-every` steps
under OUT/checkpoints; TensorBoard scalars and images under OUT/logs. Rerunning the same
command after a kill resumes at the last checkpoint. A NaN loss stops the run (exit status 3)
with a message naming the loss; the last finite checkpoint stays.

`--batch-size` is the global batch, split evenly over the replicas of `--strategy` (it must be
divisible by their count); the learning rate is that of the global batch (no scaling rule).
With `--strategy multi-worker` run the same command on every worker with its `TF_CONFIG`; OUT
must be a directory all of them can read; only the chief writes it, and restarting every worker
after a preemption resumes at the last checkpoint. `--xla`, `--mixed-precision` and
`--steps-per-execution` are execution options (recorded in OUT/train_options.json): a run may
be resumed with or without them.
"""
from __future__ import annotations

import argparse
import os
import sys

STAGE_CHOICES = ("flow", "full", "both")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the generator (stage 1 flow warm-up, stage 2 full) on a preset's data",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--preset",  # checked by TrainConfig.preset: importing the table needs TensorFlow
                        help="training preset (model, loss weights, batch, steps): deepfashion, market1501, "
                             "shapenet_chairs, kitti, voxceleb2, synthetic, demo, gfla_deepfashion, "
                             "gfla_market1501, gfla_shapenet_chairs, gfla_synthetic; default: the dataset's, "
                             "synthetic for the built-in chairs")
    parser.add_argument("--data-dir", default="synthetic",
                        help="a prepared TFDS version folder, a TFDS data_dir with --dataset, or 'synthetic' "
                             "(default)")
    parser.add_argument("--dataset", help="with a TFDS data_dir: the dataset name, e.g. market1501 or "
                                          "deep_fashion_in_shop/256x176")
    parser.add_argument("--k", type=int, help="number of sources per training tuple")
    parser.add_argument("--stage", default="both", choices=STAGE_CHOICES, help="which stage(s) to run")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--steps", type=int, help="steps of each selected stage (overrides the preset)")
    parser.add_argument("--flow-steps", type=int, help="stage-1 steps")
    parser.add_argument("--full-steps", type=int, help="stage-2 steps")
    parser.add_argument("--learning-rate", type=float, help="generator and discriminator Adam learning rate")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (and images)")
    parser.add_argument("--summary-every", type=int, help="steps between TensorBoard scalars")
    parser.add_argument("--steps-per-epoch", type=int, help="steps per progress-bar epoch")
    parser.add_argument("--vgg-weights", help="'imagenet', a local VGG19 .h5 file, or 'none' (random)")
    parser.add_argument("--gan-form", choices=("nonsaturating", "lsgan", "hinge"), help="adversarial loss form")
    parser.add_argument("--architecture", choices=("rf", "gfla"),
                        help="the generator: rf (residual flow, default) or gfla (single-source GFLA); gfla takes "
                             "the gfla_* preset of the dataset where there is one (GFLA's losses, optimiser and "
                             "discriminator), else the preset with model.architecture=gfla and K = 1")
    parser.add_argument("--width-multiplier", type=float, help="scale every channel count of the networks")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="train at this size (multiples of 32); the data are resized")
    parser.add_argument("--warp-backend", choices=("tfa", "gather"), help="warp implementation")
    parser.add_argument("--seed", type=int, help="seed of weights and tuple draws")
    parser.add_argument("--cache-dir", help="cache of the synthetic data")
    parser.add_argument("--train-objects", type=int, help="synthetic training objects (54 views each)")
    parser.add_argument("--test-objects", type=int, help="synthetic held-out objects")
    parser.add_argument("--out", default=os.path.join("runs", "train"), help="run directory (default runs/train)")
    parser.add_argument("--strategy", default="default", choices=("default", "mirrored", "multi-worker", "tpu"),
                        help="tf.distribute strategy: default (one device), mirrored (the local GPUs), multi-worker "
                             "(MultiWorkerMirroredStrategy from TF_CONFIG) or tpu (TPUStrategy; untested)")
    parser.add_argument("--tpu", help="with --strategy tpu: the TPU name or grpc:// address (default: TPU_NAME or "
                                      "the local TPU VM)")
    parser.add_argument("--xla", action="store_true",
                        help="compile the train step with XLA (jit_compile); a tfa warp runs as 'gather' instead")
    parser.add_argument("--mixed-precision", nargs="?", const="float16", choices=("float16", "bfloat16"),
                        help="mixed precision: float16 (default; loss-scaled, for GPUs) or bfloat16 (TPUs, recent "
                             "CPUs); variables stay float32")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="train steps per call of the compiled step (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def resolve_config(args):
    """The preset with the command line's overrides: a `TrainConfig`."""
    from tfrf.training.config import TrainConfig

    overrides = {}
    for arg, field in (("k", "num_sources"), ("batch_size", "batch_size"), ("learning_rate", "learning_rate"),
                       ("checkpoint_every", "checkpoint_every"), ("summary_every", "summary_every"),
                       ("steps_per_epoch", "steps_per_epoch"), ("gan_form", "gan_form"), ("seed", "seed"),
                       ("flow_steps", "flow_steps"), ("full_steps", "full_steps"),
                       ("train_objects", "train_objects"), ("test_objects", "test_objects")):
        value = getattr(args, arg, None)
        if value is not None:
            overrides[field] = value
    if args.learning_rate is not None:
        overrides["discriminator_learning_rate"] = args.learning_rate
    if args.steps is not None:
        for stage in selected_stages(args.stage):
            overrides[f"{stage}_steps"] = args.steps
    if args.vgg_weights is not None:
        overrides["vgg_weights"] = None if args.vgg_weights.lower() == "none" else args.vgg_weights
    model = {}
    if args.width_multiplier is not None:
        model["width_multiplier"] = args.width_multiplier
    if args.image_size is not None:
        model["image_height"], model["image_width"] = args.image_size
    if args.warp_backend is not None:
        model["warp_backend"] = args.warp_backend
    preset = args.preset or default_preset(args)
    architecture = getattr(args, "architecture", None)
    if architecture is not None:
        preset = architecture_preset(preset, architecture, model, overrides)
    if model:
        overrides["model"] = model
    return TrainConfig.preset(preset, **overrides)


def architecture_preset(preset: str, architecture: str, model: dict, overrides: dict) -> str:
    """The training preset for `--architecture`: gfla -> `gfla_PRESET` if there is one, else
    `preset` with model.architecture=gfla and K = 1 (added to `model` / `overrides`)."""
    from tfrf.training.config import TRAIN_PRESETS

    is_gfla_preset = TRAIN_PRESETS[preset].model.architecture == "gfla" if preset in TRAIN_PRESETS else False
    if architecture == "gfla" and not is_gfla_preset:
        if f"gfla_{preset}" in TRAIN_PRESETS:
            return f"gfla_{preset}"
        model["architecture"] = "gfla"
        overrides.setdefault("num_sources", 1)
        overrides.setdefault("eval_ks", (1,))
    elif architecture == "rf" and is_gfla_preset:
        raise ValueError(f"--architecture rf contradicts --preset {preset} (a GFLA preset); drop one of them")
    return preset


def selected_stages(stage: str):
    return ("flow", "full") if stage == "both" else (stage,)


def default_preset(args) -> str:
    """The training preset of the data: the dataset's own, or synthetic."""
    from tfrf.data.prepared import preset_of_dataset

    if args.data_dir == "synthetic":
        return "synthetic"
    return preset_of_dataset(args.data_dir, args.dataset)


def load_tables(data_dir: str, config, cache_dir=None, dataset=None):
    """(train table, preview table) from the synthetic set or a prepared TFDS dataset."""
    if data_dir == "synthetic":
        from tfrf.data import synthetic

        train = synthetic.load_table("train", cache_dir=cache_dir, seed=config.seed, num_objects=config.train_objects,
                                     image_size=config.model.image_height, verbose=True)
        test = synthetic.load_table("test", cache_dir=cache_dir, seed=config.seed, num_objects=config.test_objects,
                                    image_size=config.model.image_height, verbose=True)
        return train, test
    from tfrf.data.pipeline import table_from_tfds
    from tfrf.data.prepared import open_prepared

    builder = open_prepared(data_dir, dataset)
    train = table_from_tfds(builder, "train")
    preview = table_from_tfds(builder, "test") if "test" in builder.info.splits else train
    return train, preview


OPTIONS_FILE = "train_options.json"


def execution_config(config, xla: bool):
    """The config the run executes: under `--xla` a tfa warp becomes "gather" (tfa's resampler has
    no XLA kernel; the weights are the same), with a printed note. `config.json` keeps `config`."""
    if xla and config.model.warp_backend == "tfa":
        print("tfrf train: --xla: tfa.image.resampler has no XLA kernel; this run warps with the 'gather' backend "
              "(same weights; config.json keeps 'tfa')")
        return config.replace(model={"warp_backend": "gather"})
    return config


def mixed_precision_policy(value):
    """The Keras policy name of `--mixed-precision` (None: float32), with a note on a CPU."""
    if value is None:
        return None
    import tensorflow as tf

    if value == "float16" and not tf.config.list_physical_devices("GPU"):
        print("tfrf train: note: --mixed-precision float16 on a CPU is slower than float32 (TensorFlow has few "
              "float16 CPU kernels); it pays on GPUs. bfloat16 suits TPUs and CPUs with bfloat16 units")
    return f"mixed_{value}"


def write_options(args, out_dir: str, strategy, warp_backend: str) -> str:
    """Record the execution options of this invocation as OUT/train_options.json (chief only)."""
    import json

    from tfrf.io import atomic_write_text
    from tfrf.training import distribute

    options = {**distribute.describe(strategy), "xla": bool(args.xla), "mixed_precision": args.mixed_precision,
               "steps_per_execution": args.steps_per_execution, "warp_backend": warp_backend}
    path = os.path.join(out_dir, OPTIONS_FILE)
    atomic_write_text(path, json.dumps(options, indent=2, sort_keys=True) + "\n")
    return path


def run(args) -> int:
    return train(args)


def train(args, extra_callbacks=()) -> int:
    """`tfrf train` with `args`; `extra_callbacks` go to every stage's `fit` (tests)."""
    if args.dry_run:
        print(resolve_config(args).to_json())
        return 0
    if args.steps_per_execution < 1:
        raise ValueError(f"--steps-per-execution must be >= 1, got {args.steps_per_execution}")
    from tfrf.training import distribute

    strategy = distribute.create_strategy(args.strategy, tpu=args.tpu)  # first: MultiWorkerMirroredStrategy
    config = resolve_config(args)                                         # needs it before any TF op
    distribute.check_global_batch(config.batch_size, strategy)
    policy = mixed_precision_policy(args.mixed_precision)
    import tensorflow as tf

    previous_policy = tf.keras.mixed_precision.global_policy()
    if policy:
        tf.keras.mixed_precision.set_global_policy(policy)
    try:
        return _train(args, config, strategy, extra_callbacks)
    finally:
        tf.keras.mixed_precision.set_global_policy(previous_policy)


def _train(args, config, strategy, extra_callbacks) -> int:
    from tfrf.training import distribute, runner
    from tfrf.training.callbacks import NonFiniteLossError

    chief = distribute.is_chief(strategy)
    train_table, preview_table = load_tables(args.data_dir, config, args.cache_dir, args.dataset)
    if train_table.pose_channels != config.model.pose_channels:
        raise ValueError(f"--data-dir {args.data_dir} has {train_table.pose_channels}-channel poses "
                         f"({train_table.pose_encoder}); preset {config.name!r} expects {config.model.pose_channels}")
    executed = execution_config(config, args.xla)
    if not chief:
        runner.check_config(config, args.out)
    else:
        runner.write_config(config, args.out)
        from tfrf.evaluation.data import write_run_data  # what `tfrf evaluate --run` scores by default

        write_run_data(args.out, args.data_dir, args.dataset, seed=config.seed, test_objects=config.test_objects,
                       image_size=config.model.image_height, cache_dir=args.cache_dir)
        write_options(args, args.out, strategy, executed.model.warp_backend)
    networks = runner.create_networks(executed, strategy)
    dataset_fn = runner.training_dataset_fn(train_table, executed, strategy)
    preview = runner.preview_batch(preview_table, executed, size=min(4, config.batch_size)) if chief else None
    verbose = 0 if args.quiet or not chief else 1
    try:
        for stage in selected_stages(args.stage):
            result = runner.train_stage(stage, networks, executed, dataset_fn, args.out, preview=preview,
                                        extra_callbacks=extra_callbacks, strategy=strategy, verbose=verbose,
                                        jit_compile=args.xla, steps_per_execution=args.steps_per_execution)
            print(f"stage {stage}: steps {result['start_step']} -> {result['end_step']} "
                  f"in {result['seconds']:.1f} s")
    except NonFiniteLossError as error:
        print(f"tfrf train: {error}", file=sys.stderr)
        return 3
    return 0
