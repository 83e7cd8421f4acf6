"""Quality of the mobile network and of full-int8 under one short training budget.

    python -m tfrf.benchmarks.mobile_quality [--out runs/mobile_quality] [--flow-steps 60]
        [--full-steps 240] [--train-objects 80] [--test-objects 20] [--eval-examples 40]

Trains the `demo` recipe (built-in synthetic chairs, 64x64, `tfrf demo`) with the same budget
for each of `--networks`: "demo" (the demo's network, the `synthetic` preset at width 0.25),
"mobile" (the `voxceleb2_mobile` network shape: its width, min_channels and full_resolution,
i.e. space-to-depth stems and a pixel-shuffle head) and "mobile-conv" (the same with
full_resolution="conv"), all on the same data. For each it prints the held-out L1 / PSNR / SSIM
at K = 2 of the Keras model, of its float32 TFLite export and of its full-int8 export
(calibrated on training tuples), and the PSNR of each TFLite variant against the Keras float32
output. A short budget: relative figures, not the paper's.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, Sequence

import numpy as np


def _psnr(images, reference) -> float:
    mse = float(np.mean((np.asarray(images, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return 10.0 * np.log10(4.0 / max(mse, 1e-12))


def score_variants(generator, table, tuples, calibration_tuples, train_table,
                   quantizations: Sequence[str] = ("none", "full-int8")) -> Dict[str, Dict[str, float]]:
    """Held-out metrics of the Keras model and of its TFLite exports, one per `quantizations`
    ("none" = float32, "float16", "dynamic-int8", "full-int8"; K = 2)."""
    import tensorflow as tf

    from tfrf.data.pipeline import make_dataset
    from tfrf.export.tflite import convert, load_interpreter
    from tfrf.metrics.image import MetricAccumulator
    from tfrf.models.generator import INPUT_KEYS

    k = tuples.shape[1] - 1
    size = generator.config.image_size

    def batches(view_table, rows):
        dataset = make_dataset(view_table, k, batch_size=1, training=False, tuples=rows, image_size=size)
        return [{key: batch[key].numpy() for key in (*INPUT_KEYS, "target_image")} for batch in dataset]

    examples = batches(table, tuples)
    calibration = [{key: example[key] for key in INPUT_KEYS} for example in batches(train_table, calibration_tuples)]
    keras_outputs = [generator({key: example[key] for key in INPUT_KEYS}).numpy() for example in examples]
    results = {}
    accumulator = MetricAccumulator()
    for output, example in zip(keras_outputs, examples):
        accumulator.update(tf.constant(output), tf.constant(example["target_image"]))
    results["keras"] = accumulator.result()
    for quantize in quantizations:
        interpreter = load_interpreter(convert(generator, k, quantize, representative_inputs=calibration), 1)
        encode = interpreter.get_signature_runner("encode_sources")
        render = interpreter.get_signature_runner("render")
        accumulator = MetricAccumulator()
        agreement = []
        for output, example in zip(keras_outputs, examples):
            inputs = {key: example[key] for key in INPUT_KEYS}
            image = render(**inputs, **encode(source_images=inputs["source_images"]))["image"]
            accumulator.update(tf.constant(image), tf.constant(example["target_image"]))
            agreement.append(_psnr(image, output))
        results[quantize] = {**accumulator.result(), "psnr_vs_keras": float(np.mean(agreement))}
    return results


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.mobile_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("runs", "mobile_quality"))
    parser.add_argument("--flow-steps", type=int, default=60)
    parser.add_argument("--full-steps", type=int, default=240)
    parser.add_argument("--train-objects", type=int, default=80)
    parser.add_argument("--test-objects", type=int, default=20)
    parser.add_argument("--eval-examples", type=int, default=40)
    parser.add_argument("--calibration-examples", type=int, default=16)
    parser.add_argument("--networks", nargs="+", default=["demo", "mobile"], choices=["demo", "mobile", "mobile-conv"])
    parser.add_argument("--quantize", nargs="+", default=["none", "full-int8"],
                        choices=["none", "float16", "dynamic-int8", "full-int8"], help="the exports to score")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tfrf
    from tfrf.data import synthetic
    from tfrf.data.tuples import held_out_tuples
    from tfrf.export import export_generator
    from tfrf.training.config import TrainConfig
    from tfrf.training.demo import run_demo

    # A constant rate: these budgets are a few dozen steps, which the demo's cosine would end at 5 %
    # of the rate before the network leaves the random regime.
    base = TrainConfig.preset("demo", learning_rate_decay="constant", flow_steps=args.flow_steps,
                              full_steps=args.full_steps,
                              train_objects=args.train_objects, test_objects=args.test_objects,
                              eval_examples=args.eval_examples)
    mobile = tfrf.ModelConfig.preset("voxceleb2_mobile")
    mobile_shape = base.model.replace(width_multiplier=mobile.width_multiplier, min_channels=mobile.min_channels,
                                      full_resolution=mobile.full_resolution)
    models = {"demo": base.model, "mobile": mobile_shape, "mobile-conv": mobile_shape.replace(full_resolution="conv")}
    report = {}
    for label in args.networks:
        config = base.replace(model=models[label])
        out = os.path.join(args.out, label)
        run_demo(config, out, verbose=0)
        tables = {split: synthetic.load_table(split, seed=config.seed, verbose=False,
                                              num_objects=getattr(config, f"{split}_objects"))
                  for split in ("train", "test")}
        generator = export_generator(config.model, out, tflite=True)
        tuples, _ = held_out_tuples(tables["test"], 2, seed=config.seed, max_examples=args.eval_examples)
        calibration, _ = held_out_tuples(tables["train"], 2, seed=config.seed + 1,
                                         max_examples=args.calibration_examples)
        results = score_variants(generator, tables["test"], tuples, calibration, tables["train"], args.quantize)
        parameters = sum(int(np.prod(v.shape)) for v in generator.trainable_variables)
        report[label] = {"parameters": parameters, "width_multiplier": config.model.width_multiplier,
                         "min_channels": config.model.min_channels, "full_resolution": config.model.full_resolution,
                         **results}
        print(f"\n{label}: width {config.model.width_multiplier:g}, min_channels {config.model.min_channels}, "
              f"full_resolution {config.model.full_resolution}, "
              f"{parameters / 1e6:.2f} M parameters; budget {config.flow_steps} + {config.full_steps} steps of "
              f"batch {config.batch_size}, {config.train_objects} training objects; K = 2, "
              f"{len(tuples)} held-out tuples")
        for variant, values in results.items():
            extra = f", PSNR vs Keras {values['psnr_vs_keras']:.1f} dB" if "psnr_vs_keras" in values else ""
            print(f"  {variant:>9}: L1 {values['l1']:.4f}  PSNR {values['psnr']:.2f} dB  SSIM {values['ssim']:.3f}{extra}",
                  flush=True)
    from tfrf.io import atomic_write_text

    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "report.json"), json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
