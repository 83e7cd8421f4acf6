"""`tfrf evaluate`: the papers' figures for trained runs on the fixed test tuples, as one report.

    tfrf evaluate --run runs/market --k 1 2 3 --lpips-weights weights/ --inception-weights \\
        weights/pt_inception-2015-12-05-6726825d.pth --real-stats market_train.npz --out reports/market
    tfrf evaluate --run runs/full --run runs/baseline --data-dir synthetic --k 1 2 4 --out reports/ablation
    tfrf evaluate --weights gfla_market.weights.h5 --config gfla_market.config.json --data-dir DIR \\
        --k 1 --jpeg --fid-mode gfla --metrics fid lpips mlpips --lpips-weights weights/ \\
        --inception-weights weights/inception_v3_google-0cc3c7bd.pth --real-stats train_images/ --out reports/gfla

The data defaults to what the runs trained on (`RUN/data.json`), else give `--data-dir` (a
prepared TFDS version folder, a TFDS data_dir with `--dataset NAME`, or `synthetic`). Every K
renders the builder's fixed test tuples (`test_tuples_k{K}.npy` beside the prepared data; drawn
with the run's seed for the built-in chairs), writes the images (PNG, or `--jpeg` as GFLA stored
them) and scores the files read back: L1, PSNR, SSIM, LPIPS (AlexNet v0.1), Mask-LPIPS (keypoint
data) and FID (`--fid-mode standard` = pytorch-fid, `gfla` = GFLA's script). Several runs give
one table, rows K x run. Outputs in `--out` (written in a temporary folder, then renamed):
metrics.json, metrics.csv, metrics.md, gallery_RUN_kK.png (best and worst by L1), generated/,
tuples/.

Weights never download: `--lpips-weights DIR` holds `alexnet-owt-7be5be79.pth` (torchvision) and
`alex.pth` (the lpips package), or the same state dicts as `.npz`; `--inception-weights F` is
pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (standard) or torchvision's
`inception_v3_google-0cc3c7bd.pth` (gfla), or `.npz` / `.weights.h5`. `--real-stats` is the FID
reference: an `.npz` with mu and sigma, or a folder of real images (e.g. the training set, as the
papers; cached); without it FID compares with the targets scored. The library half is
`tfrf.evaluation`.

`--protocol gfla` (default) scores the whole frame at the model's size (GFLA's 256 x 256);
`--protocol pt176` the 176-wide centre crop of the 256 x 256 output (bicubic to 256 x 256 first
when the model runs at another size), stored as PNG, as PATN / PISE / NTED / PIDM / CFLD: give
`--real-stats` of the training set's 256 x 176 images. Every metrics.json holds a protocol card
(sizes, crop, kernels, formats, real set, Inception, LPIPS, SSIM window). On the built-in chairs
(`--data-dir synthetic`, `--dataset misaligned` for the jittered cameras, `misaligned_sources` for
jittered sources and targets at their nominal cameras) the report adds the
mechanism metrics against the renderer's ground truth: flow and refined-flow EPE per level,
occlusion AUROC, attention agreement, coverage AUROC (docs/metrics.md).
"""
from __future__ import annotations

from typing import Optional

from tfrf.commands.common import documented_parser

METRIC_CHOICES = ("fid", "lpips", "mlpips", "ssim", "psnr", "l1")


def register(subparsers) -> None:
    from tfrf.config import PRESETS

    parser = documented_parser(subparsers, "evaluate", "score runs on the fixed test tuples (FID, LPIPS, Mask-LPIPS, "
                               "SSIM, PSNR, L1) into one report", __doc__)
    models = parser.add_argument_group("models")
    models.add_argument("--run", action="append", default=[], metavar="RUN",
                        help="a training run directory (repeat for several runs: one table)")
    models.add_argument("--weights", action="append", default=[], metavar="W",
                        help="generator weights: a run directory, a checkpoint prefix or a .weights.h5 (repeatable)")
    models.add_argument("--config", help="with --weights: a run's config.json or a ModelConfig JSON")
    models.add_argument("--preset", choices=sorted(PRESETS), help="with --weights: the model preset")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", help="a prepared TFDS version folder, a TFDS data_dir with --dataset, or "
                                         "'synthetic'; default: what the runs trained on (RUN/data.json)")
    data.add_argument("--dataset", help="with a TFDS data_dir: the dataset name, e.g. market1501; with synthetic: "
                                        "'misaligned' for the jittered cameras, 'misaligned_sources' for jittered sources only")
    data.add_argument("--cache-dir", help="cache of the synthetic data")
    data.add_argument("--test-objects", type=int, help="synthetic held-out objects (default: the run's)")
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument("--k", type=int, nargs="+", help="numbers of sources (default: the run's eval_ks)")
    scoring.add_argument("--metrics", nargs="+", choices=METRIC_CHOICES,
                         help="default: l1 psnr ssim, plus lpips (and mlpips on keypoint data) with "
                              "--lpips-weights, plus fid with --inception-weights")
    scoring.add_argument("--fid-mode", choices=("standard", "gfla"), default="standard",
                         help="standard: pytorch-fid / TTUR; gfla: GFLA's script (torchvision Inception)")
    scoring.add_argument("--protocol", choices=("gfla", "pt176"), default="gfla",
                         help="gfla: whole frame at the model's size; pt176: 176-wide centre crop of the 256x256 "
                              "output (bicubic), PNG")
    scoring.add_argument("--no-mechanism", action="store_true",
                         help="skip the mechanism metrics (flow EPE, occlusion AUROC, ...) on data with ground truth")
    scoring.add_argument("--lpips-weights", metavar="DIR",
                         help="folder with alexnet-owt-7be5be79.pth and alex.pth (or .npz)")
    scoring.add_argument("--inception-weights", metavar="F", help="Inception v3 weights (.pth, .npz, .weights.h5)")
    scoring.add_argument("--real-stats", metavar="F.npz|DIR", help="FID reference statistics or real image folder")
    scoring.add_argument("--metrics-cache-dir", help="cache of converted metric weights and real statistics")
    scoring.add_argument("--random-metric-weights", action="store_true",
                         help="FOR TESTING ONLY: LPIPS and Inception with seeded random weights (meaningless figures)")
    scoring.add_argument("--inception-input-size", type=int, default=299,
                         help="FOR TESTING ONLY: Inception input side (299 defines FID; >= 75)")
    scoring.add_argument("--max-examples", type=int, help="at most this many test tuples per K (evenly thinned)")
    scoring.add_argument("--batch-size", type=int, default=16, help="generator batch (default 16)")
    scoring.add_argument("--jpeg", action="store_true",
                         help="store the images as GFLA did (uint8 truncation, JPEG quality 75) and score those")
    scoring.add_argument("--gallery-rows", type=int, default=4, help="best and worst cases in each gallery")
    parser.add_argument("--out", required=True, help="report folder (a previous report there is replaced)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _check_arguments(args) -> None:
    for name in ("max_examples", "batch_size", "gallery_rows", "test_objects"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    for k in args.k or ():
        _positive("--k", k)
    if args.inception_input_size < 75:
        raise ValueError(f"--inception-input-size must be >= 75, got {args.inception_input_size}")
    if args.dataset and not args.data_dir:
        raise ValueError("--dataset needs --data-dir (the TFDS data_dir)")
    if args.protocol == "pt176" and args.jpeg:
        raise ValueError("--protocol pt176 stores PNG: drop --jpeg")


def run(args) -> int:
    from tfrf.evaluation import data as data_lib
    from tfrf.evaluation import metric_networks, report, tables

    _check_arguments(args)
    random = args.random_metric_weights
    if args.lpips_weights and not random:
        metric_networks.lpips_weight_files(args.lpips_weights)  # a missing file ends the command now
    if args.inception_weights and not random:
        metric_networks.check_inception_file(args.inception_weights, args.fid_mode)
    available = dict(lpips_available=bool(args.lpips_weights) or random,
                     inception_available=bool(args.inception_weights) or random, fid_mode=args.fid_mode)
    # Metrics asked for without their weights end the command before anything loads.
    metric_networks.select_metrics(args.metrics, has_keypoints=True, **available)
    models = report.models_from_sources(args.run, args.weights, args.config, args.preset)
    directories = data_lib.run_directories(args.run, args.weights)
    data = data_lib.data_for_runs(directories, args.data_dir, args.dataset, image_size=models[0].config.image_height,
                                  test_objects=args.test_objects, cache_dir=args.cache_dir, verbose=not args.quiet)
    metrics, notes = metric_networks.select_metrics(args.metrics, has_keypoints=data.has_keypoints, **available)
    if args.protocol == "pt176" and "mask_lpips" in metrics:
        metrics.remove("mask_lpips")
        notes.append("mlpips does not apply under --protocol pt176 (Market-1501's body mask, not a 256x176 crop)")
    for note in notes:
        print(f"tfrf evaluate: {note}")
    networks = metric_networks.build_metric_networks(
        metrics, lpips_weights=args.lpips_weights, inception_weights=args.inception_weights, fid_mode=args.fid_mode,
        inception_input_size=args.inception_input_size, random_weights=random, cache_dir=args.metrics_cache_dir)
    if random:
        notes.append("LPIPS and FID with RANDOM network weights (--random-metric-weights): for testing only")
    real = None
    if args.real_stats and "fid" in metrics:
        real = metric_networks.real_statistics(args.real_stats, networks["inception"], args.fid_mode,
                                               args.metrics_cache_dir)
    settings = report.Settings(ks=args.k or data_lib.default_ks(directories[0]), metrics=metrics,
                               batch_size=args.batch_size, max_examples=args.max_examples, jpeg=args.jpeg,
                               gallery_rows=args.gallery_rows, progress=not args.quiet, fid_mode=args.fid_mode,
                               protocol=args.protocol, real_stats=args.real_stats if "fid" in metrics else None,
                               mechanism=not args.no_mechanism)
    written = report.write_report(args.out, models, data, settings, networks, real, notes)

    print(tables.markdown(written).split("\n\n")[1])
    print(f"wrote {args.out}/metrics.json, metrics.csv, metrics.md, {len(written['runs'])} run(s) x "
          f"{len(settings.ks)} K: galleries and generated images")
    return 0
