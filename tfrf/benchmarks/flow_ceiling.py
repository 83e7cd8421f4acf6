"""How far can the flow extractor get when it is told the answer? A preset's flow extractor trained
on the renderer's ground-truth flow of the built-in chairs, scored like `tfrf evaluate` scores it.

    python -m tfrf.benchmarks.flow_ceiling [--preset demo] [--steps 375 900 3000] [--k 2]
        [--examples 100] [--dataset aligned] [--then-stage1 300] [--out FILE.json]

A probe, not a recipe: no preset trains on the ground truth (a demo trained on the answer would not
show that the mechanism works). It separates the two limits of a flow's end-point error: the
training signal (the photometric or correctness loss of stage 1) and what the network learns at a
budget. Each step takes `batch_size` fresh training pairs (one source and one target view of a
training object; the extractor warps each source on its own, so K does not change what it learns)
and minimises the mean end-point error on the pixels the source sees, summed over the flow levels
(H/8, H/4), with Adam at the preset's learning rate (constant). At every step count of `--steps` it
prints the seconds spent training and the base flow's EPE on held-out K-tuples
(`tfrf.evaluation.mechanism.evaluate_mechanism`), against the zero flow's EPE and the demo's goal,
half of it.

`--then-stage1 N` then trains the same extractor N more steps on the preset's own stage-1 loss
(`tfrf.training.runner.compile_stage("flow")`: the photometric or correctness loss and the
regularisation, K sources, the preset's learning-rate schedule over N steps) and scores it again:
is the truth a resting point of that loss, or does the loss pull the flow away from it?
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, Optional, Sequence

import numpy as np

GOAL_SHARE = 0.5  # the goal: EPE at H/4 at most this share of the zero flow's


def _visible_epe(flow, truth, visible):
    """Mean over visible entries of ||flow - truth||: flow, truth `[B, K, h, w, 2]`, visible `[B, K, h, w]`."""
    import tensorflow as tf

    error = tf.sqrt(tf.reduce_sum(tf.square(flow - truth), axis=-1) + 1e-12)
    return tf.reduce_sum(error * visible) / tf.maximum(tf.reduce_sum(visible), 1.0)


class TruthTrainer:
    """Trains a generator's flow extractor on the renderer's ground-truth flow of the built-in
    chairs: `train_to(n)` runs steps until n, each on `batch_size` fresh pairs (one source and one
    target view of an object of `table`, a training split as `synthetic.load_table` makes it), the
    mean end-point error on the pixels the source sees summed over the flow levels, Adam at
    `config.learning_rate`. `misaligned` / `nominal_target`: the truth of the misaligned variants
    (`synthetic.tuple_ground_truth`); both False on misaligned data gives the flow the pose labels
    imply (the nominal cameras'). `seconds`: time in the train step (not the ray casting). The
    pairs are drawn once for `total_steps` (seeded by `seed`): another total draws other pairs."""

    def __init__(self, generator, config, table, total_steps: int, *, batch_size: int, seed: int = 0,
                 misaligned: bool = False, nominal_target: bool = False, verbose: int = 1):
        import tensorflow as tf

        from tfrf.data.pipeline import make_dataset
        from tfrf.data.tuples import draw_tuples
        from tfrf.evaluation.mechanism import LEVELS

        self.generator, self.table, self.batch_size, self.levels = generator, table, batch_size, LEVELS
        self.size, self.data_seed = config.model.image_height, config.seed
        self.misaligned, self.nominal_target = misaligned, nominal_target
        self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
        h, w, cp = config.model.image_height, config.model.image_width, config.model.pose_channels
        sizes = {level: (h // int(level[1:]), w // int(level[1:])) for level in LEVELS}
        signature = [{"source_images": tf.TensorSpec([batch_size, 1, h, w, 3], tf.float32),
                      "source_poses": tf.TensorSpec([batch_size, 1, h, w, cp], tf.float32),
                      "target_pose": tf.TensorSpec([batch_size, h, w, cp], tf.float32)},
                     {level: tf.TensorSpec([batch_size, 1, *sizes[level], 2], tf.float32) for level in LEVELS},
                     {level: tf.TensorSpec([batch_size, 1, *sizes[level]], tf.float32) for level in LEVELS}]
        self.step = tf.function(self._step, input_signature=signature)
        self.tuples = draw_tuples(table.groups, 1, np.random.default_rng([seed, 7]),
                                  num_tuples=int(total_steps) * batch_size)
        self.batches = iter(make_dataset(table, 1, batch_size=batch_size, training=False, tuples=self.tuples,
                                         image_size=(h, w), drop_remainder=True))
        self.done, self.seconds = 0, 0.0
        self.progress = tf.keras.utils.Progbar(int(total_steps), verbose=verbose, stateful_metrics=["epe_loss"])

    def _step(self, inputs, truth, visible):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            flows = self.generator.extract_flows(inputs)
            loss = tf.add_n([_visible_epe(tf.cast(flows[level]["flow"], tf.float32), truth[level], visible[level])
                             for level in self.levels])
        variables = self.generator.flow_extractor.flow_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def train_to(self, steps: int) -> None:
        import tensorflow as tf

        from tfrf.data import synthetic
        from tfrf.models.generator import INPUT_KEYS

        if steps * self.batch_size > len(self.tuples):
            raise ValueError(f"TruthTrainer: {steps} steps are more than the {len(self.tuples) // self.batch_size} "
                             "it was made for")
        while self.done < steps:
            batch = next(self.batches)
            chunk = self.tuples[self.done * self.batch_size:(self.done + 1) * self.batch_size]
            truth = synthetic.tuple_ground_truth(self.table.groups, self.table.order, chunk, self.size, split="train",
                                                 misaligned=self.misaligned, seed=self.data_seed, levels=self.levels,
                                                 nominal_target=self.nominal_target)
            start = time.perf_counter()
            loss = self.step({key: batch[key] for key in INPUT_KEYS},
                             {level: tf.constant(truth[level]["flow"], tf.float32) for level in self.levels},
                             {level: tf.constant(truth[level]["visible"], tf.float32) for level in self.levels})
            self.seconds += time.perf_counter() - start
            self.done += 1
            self.progress.update(self.done, [("epe_loss", float(loss))])


def flow_ceiling(config, steps: Sequence[int] = (375, 900, 3000), k: int = 2, examples: int = 100,
                 dataset: Optional[str] = None, batch_size: Optional[int] = None, seed: int = 0,
                 cache_dir: Optional[str] = None, verbose: int = 1, then_stage1: int = 0) -> Dict:
    """The figures of the module docstring as a dict: `{"rows": [{"steps", "seconds", "epe_flow_h8",
    "epe_flow_h4", "epe_zero_h8", "epe_zero_h4"}, ...], "goal_h4", ...}`, for a `TrainConfig`
    (its model, learning rate, batch size, seed and built-in data sizes). Rows trained on the
    truth have `"loss": "ground truth"`; with `then_stage1` a last row `"loss": "stage 1"`."""
    from tfrf.data import synthetic
    from tfrf.evaluation import data as data_lib
    from tfrf.training.networks import create_networks
    from tfrf.training.run import SYNTHETIC, load_data

    steps = sorted({int(s) for s in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"flow_ceiling: --steps must be >= 1, got {steps}")
    if config.model.architecture != "rf":
        raise ValueError(f"preset {config.name!r} is a {config.model.architecture!r} model; the ceiling needs 'rf'")
    batch_size = batch_size or config.batch_size
    variant = synthetic.variant_arguments(dataset)
    say = print if verbose else (lambda *a, **kw: None)
    train = load_data(SYNTHETIC, config, dataset, cache_dir=cache_dir, verbose=bool(verbose)).train
    test = data_lib.open_data(SYNTHETIC, dataset, seed=config.seed, test_objects=config.test_objects,
                              image_size=config.model.image_height, cache_dir=cache_dir, verbose=False)
    eval_tuples, _ = test.test_tuples(k, examples)
    networks = create_networks(config)
    generator = networks.generator
    trainer = TruthTrainer(generator, config, train, steps[-1], batch_size=batch_size, seed=seed,
                           misaligned=variant["misaligned"], nominal_target=variant["nominal_targets"],
                           verbose=verbose)
    rows, began = [], time.perf_counter()
    for checkpoint in steps:
        trainer.train_to(checkpoint)
        seconds = trainer.seconds
        rows.append(_scored(generator, test, k, eval_tuples, steps=checkpoint, seconds=seconds, loss="ground truth"))
        say(f"\n{checkpoint} steps: EPE at H/4 {rows[-1]['epe_flow_h4']:.3f} (zero flow {rows[-1]['epe_zero_h4']:.3f})")
    if then_stage1:
        from tfrf.training.runner import compile_stage, training_dataset_fn

        stage1 = config.replace(flow_steps=int(then_stage1), batch_size=batch_size)
        model = compile_stage("flow", networks, stage1)
        start = time.perf_counter()
        model.fit(training_dataset_fn(train, stage1)(0), epochs=1, steps_per_epoch=int(then_stage1), verbose=verbose)
        seconds = trainer.seconds + time.perf_counter() - start
        rows.append(_scored(generator, test, k, eval_tuples, steps=steps[-1] + int(then_stage1), seconds=seconds,
                            loss="stage 1"))
    zero_h4 = rows[-1]["epe_zero_h4"]
    return {"preset": config.name, "dataset": dataset or "aligned", "k": k, "examples": int(len(eval_tuples)),
            "batch_size": batch_size, "learning_rate": config.learning_rate, "seed": seed, "rows": rows,
            "goal_h4": GOAL_SHARE * zero_h4, "wall_seconds": time.perf_counter() - began}


def _scored(generator, test, k: int, tuples, **row) -> Dict:
    from tfrf.evaluation.mechanism import LEVELS, evaluate_mechanism

    scores = evaluate_mechanism(generator, test, k, tuples)
    return {**row, **{f"{measure}_{name}_{level}": scores[f"{measure}_{name}_{level}"]
                      for measure, names in (("epe", ("flow", "zero")), ("gain", ("flow",)))
                      for name in names for level in LEVELS}}


def format_result(result: Dict) -> str:
    lines = [f"Flow extractor of preset {result['preset']!r} trained on the ground-truth flow "
             f"({result['dataset']} chairs, batch {result['batch_size']}, Adam {result['learning_rate']:g}); "
             f"base-flow EPE on {result['examples']} held-out K = {result['k']} tuples, pixels of each level:",
             "",
             "| loss | steps | training s | EPE H/8 (zero) | EPE H/4 (zero) | share of zero at H/4 | gain H/4 "
             "| goal met |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        share = row["epe_flow_h4"] / row["epe_zero_h4"]
        lines.append(f"| {row['loss']} | {row['steps']} | {row['seconds']:.0f} | {row['epe_flow_h8']:.3f} "
                     f"({row['epe_zero_h8']:.3f}) | {row['epe_flow_h4']:.3f} ({row['epe_zero_h4']:.3f}) | {share:.0%} "
                     f"| {row['gain_flow_h4']:.2f} | {'yes' if row['epe_flow_h4'] <= result['goal_h4'] else 'no'} |")
    lines.append(f"\ngoal: EPE at H/4 <= {result['goal_h4']:.3f} ({GOAL_SHARE:.0%} of the zero flow's)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.flow_ceiling",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--preset", default="demo", help="the training preset whose flow extractor to train")
    parser.add_argument("--steps", type=int, nargs="+", default=[375, 900, 3000],
                        help="step counts at which to score (default 375 900 3000)")
    parser.add_argument("--k", type=int, default=2, help="sources per held-out tuple (default 2)")
    parser.add_argument("--examples", type=int, default=100, help="held-out tuples (default 100)")
    parser.add_argument("--dataset", help="the chairs' variant: aligned (default), misaligned, misaligned_sources")
    parser.add_argument("--batch-size", type=int, help="training pairs per step (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training pairs (default 0)")
    parser.add_argument("--cache-dir", help="the built-in data's cache (default: tfrf's)")
    parser.add_argument("--then-stage1", type=int, default=0, metavar="N",
                        help="then N steps of the preset's stage-1 loss, scored again (default 0: none)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.then_stage1 < 0:
        parser.error("--then-stage1 must be >= 0")
    if min(args.steps) < 1 or args.k < 1 or args.examples < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--steps, --k, --examples and --batch-size must be >= 1")
    from tfrf.benchmarks.report import print_and_write
    from tfrf.training.config import TRAIN_PRESETS, TrainConfig

    if args.preset not in TRAIN_PRESETS:
        parser.error(f"--preset {args.preset}: choose from {', '.join(sorted(TRAIN_PRESETS))}")
    return print_and_write("flow_ceiling", lambda: flow_ceiling(
        TrainConfig.preset(args.preset), args.steps, args.k, args.examples, args.dataset, args.batch_size, args.seed,
        args.cache_dir, then_stage1=args.then_stage1), format_result, args.out)

if __name__ == "__main__":
    raise SystemExit(main())
