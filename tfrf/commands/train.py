"""`tfrf train`: the two training stages for any preset and data source.

    tfrf train --data-dir ~/tensorflow_datasets/deep_fashion_in_shop/256x256/1.0.0 --k 2 --out runs/df
    tfrf train --data-dir ~/tensorflow_datasets --dataset market1501 --dry-run   # print the resolved config
    tfrf train --data-dir synthetic --steps 2000 --out runs/chairs               # the built-in chairs
    tfrf train --architecture gfla --data-dir DIR --out runs/gfla  # GFLA (the gfla_* preset of the data)
    tfrf train --strategy mirrored --batch-size 16 --mixed-precision --xla --out runs/gpus   # local GPUs
    TF_CONFIG=... tfrf train --strategy multi-worker --batch-size 16 --out /shared/runs/df  # on each host

`--data-dir` is a prepared TFDS version folder (the one holding dataset_info.json), a TFDS
data_dir with `--dataset NAME[/CONFIG]`, or `synthetic` for the built-in chairs. What the builder
knows (pose encoder, grouping, frame window, target eligibility) is read from the prepared data;
the preset defaults to the dataset's. OUT gets config.json, data.json, checkpoints/ (every
`--checkpoint-every` steps) and logs/ (TensorBoard). Rerunning the same command after a kill
resumes at the last checkpoint. A NaN loss stops the run (exit status 3), naming the loss.

`--batch-size` is the global batch, split evenly over the replicas of `--strategy`; the learning
rate is that of the global batch. With `--strategy multi-worker` run the same command on every
worker with its `TF_CONFIG`; OUT must be shared; only the chief writes it. `--xla`,
`--mixed-precision` and `--steps-per-execution` are execution options (OUT/train_options.json):
a run may be resumed with or without them. The library half is `tfrf.training.run`.
"""
from __future__ import annotations

import os
import sys

from tfrf.commands.common import add_budget_arguments, documented_parser

STAGE_CHOICES = ("flow", "full", "both")
# Options that set the TrainConfig field of the same name.
CONFIG_FIELDS = ("batch_size", "learning_rate", "checkpoint_every", "summary_every", "steps_per_epoch", "gan_form",
                 "seed", "flow_steps", "full_steps", "train_objects", "test_objects", "learning_rate_decay",
                 "flow_loss_on", "full_generator_epsilon")


def register(subparsers) -> None:
    parser = documented_parser(subparsers, "train", "train the generator (stage 1 flow warm-up, stage 2 full) on a "
                               "preset's data", __doc__)
    add_budget_arguments(parser, "the preset's")
    parser.add_argument("--preset",  # checked by TrainConfig.preset: importing the table needs TensorFlow
                        help="training preset (model, loss weights, batch, steps): deepfashion, market1501, "
                             "shapenet_chairs, kitti, voxceleb2, synthetic, demo, gfla_deepfashion, "
                             "gfla_market1501, gfla_shapenet_chairs, gfla_synthetic; default: the dataset's, "
                             "synthetic for the built-in chairs")
    parser.add_argument("--data-dir", default="synthetic",
                        help="a prepared TFDS version folder, a TFDS data_dir with --dataset, or 'synthetic' "
                             "(default)")
    parser.add_argument("--dataset", help="with a TFDS data_dir: the dataset name, e.g. market1501 or "
                                          "deep_fashion_in_shop/256x176; with synthetic: 'misaligned' (jittered "
                                          "cameras) or 'misaligned_sources' (jittered sources, nominal targets)")
    parser.add_argument("--k", type=int, help="number of sources per training tuple")
    parser.add_argument("--stage", default="both", choices=STAGE_CHOICES, help="which stage(s) to run")
    parser.add_argument("--steps", type=int, help="steps of each selected stage (default: the preset's, at most "
                                                   "100 passes over the training tuples)")
    parser.add_argument("--epochs", type=float, help="passes over the training tuples for each selected stage "
                                                     "(sets its steps from the data's size)")
    parser.add_argument("--learning-rate", type=float, help="generator and discriminator Adam learning rate")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (and images)")
    parser.add_argument("--summary-every", type=int, help="steps between TensorBoard scalars")
    parser.add_argument("--steps-per-epoch", type=int, help="steps per progress-bar epoch")
    parser.add_argument("--vgg-weights", help="'imagenet', a local VGG19 .h5 file, or 'none' (random)")
    parser.add_argument("--gan-form", choices=("nonsaturating", "lsgan", "hinge"), help="adversarial loss form")
    parser.add_argument("--learning-rate-decay", choices=("constant", "cosine", "cosine_full"),
                        help="learning rate over each stage: constant (the paper's), a cosine to 5%% of it, "
                             "or that cosine in stage 2 only (cosine_full)")
    parser.add_argument("--flow-loss-on", choices=("base", "refined"),
                        help="what stage 2's flow losses score: the extractor's flow (base, the paper's) or "
                             "base + residual flow (refined)")
    parser.add_argument("--full-generator-epsilon", type=float, metavar="EPS",
                        help="epsilon of the generator's Adam in stage 2 (default Keras's 1e-7; larger values damp "
                             "Adam's steps where gradients vanish, e.g. a saturated tanh output)")
    parser.add_argument("--saturation-weight", type=float, metavar="W",
                        help="weight of the hinge on the output's pre-tanh values beyond 8-bit saturation "
                             "(LossWeights.saturation; 0 in the paper presets): keeps stage 2 from saturating its "
                             "output for good when most target pixels are exactly white or black")
    parser.add_argument("--architecture", choices=("rf", "gfla"),
                        help="the generator: rf (residual flow, default) or gfla (single-source GFLA); gfla takes "
                             "the gfla_* preset of the dataset where there is one (GFLA's losses, optimiser and "
                             "discriminator), else the preset with model.architecture=gfla and K = 1")
    parser.add_argument("--width-multiplier", type=float, help="scale every channel count of the networks")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="train at this size (multiples of 32); the data are resized")
    parser.add_argument("--warp-backend", choices=("tfa", "gather"), help="warp implementation")
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
    parser.set_defaults(func=run)


def resolve_config(args):
    """The preset with the command line's overrides: a `TrainConfig`."""
    from tfrf.training.run import resolve_config as resolve

    fields = {field: getattr(args, field) for field in CONFIG_FIELDS}
    if getattr(args, "saturation_weight", None) is not None:
        fields["loss_weights"] = {"saturation": args.saturation_weight}
    return resolve(args.preset, args.data_dir, args.dataset, stages=selected_stages(args.stage), k=args.k,
                   steps=args.steps, vgg_weights=args.vgg_weights, architecture=getattr(args, "architecture", None),
                   width_multiplier=args.width_multiplier, image_size=args.image_size,
                   warp_backend=args.warp_backend, **fields)


def selected_stages(stage: str):
    return ("flow", "full") if stage == "both" else (stage,)


def run(args) -> int:
    return train(args)


def train(args, extra_callbacks=()) -> int:
    """`tfrf train` with `args`; `extra_callbacks` go to every stage's `fit` (tests)."""
    if args.steps is not None and args.epochs is not None:
        raise ValueError("give --steps or --epochs, not both")
    if args.dry_run:
        print(resolve_config(args).to_json())
        return 0
    from tfrf.training import distribute
    from tfrf.training.callbacks import NonFiniteLossError
    from tfrf.training.networks import check_vgg_weights
    from tfrf.data.tuples import DEFAULT_MAX_EPOCHS, capped_steps, steps_for_epochs, tuples_per_epoch
    from tfrf.training.run import ExecutionOptions, TrainingRun, load_data, precision_policy

    options = ExecutionOptions(distribute.create_strategy(args.strategy, tpu=args.tpu),  # first: before any TF op
                               args.xla, args.mixed_precision, args.steps_per_execution)
    config = resolve_config(args)
    check_vgg_weights(config)  # before anything is written: nothing downloads
    distribute.check_global_batch(config.batch_size, options.strategy)
    with precision_policy(args.mixed_precision):
        data = load_data(args.data_dir, config, args.dataset, args.cache_dir)
        per_epoch = tuples_per_epoch(data.train, config.num_sources)
        if args.epochs is not None:
            config = config.replace(**{f"{stage}_steps": steps_for_epochs(args.epochs, per_epoch, config.batch_size)
                                       for stage in selected_stages(args.stage)})
        elif args.steps is None:  # the preset's length, at most DEFAULT_MAX_EPOCHS passes over small data
            config = config.replace(**{f"{stage}_steps": capped_steps(config.steps(stage), per_epoch, config.batch_size)
                                       for stage in selected_stages(args.stage)
                                       if getattr(args, f"{stage}_steps") is None})
        run = TrainingRun(config, data, args.out, options, verbose=0 if args.quiet else 1)
        try:
            for stage in selected_stages(args.stage):
                print(f"stage {stage}: {config.steps(stage)} steps of batch {config.batch_size} = "
                      f"{config.steps(stage) * config.batch_size / max(per_epoch, 1):.4g} passes over the {per_epoch} "
                      f"training tuples (presets stop at {DEFAULT_MAX_EPOCHS:g}; --steps or --epochs to change)")
                result = run.train_stage(stage, extra_callbacks)
                print(f"stage {stage}: steps {result['start_step']} -> {result['end_step']} "
                      f"in {result['seconds']:.1f} s")
        except NonFiniteLossError as error:
            print(f"tfrf train: {error}", file=sys.stderr)
            return 3
    return 0
