"""Benchmarks, each `python -m tfrf.benchmarks.NAME` (figures are printed, never asserted).

- `forward`: forward latency and peak memory per warp backend, XLA and K (`tfrf bench`).
- `train_step`: train-step images/s with FLOPs by part against the conv throughput.
- `gpu`: train step per precision and XLA, at batch 5 and the largest batch, with MFU; and
  SavedModel / TFLite inference latency (needs a GPU).
- `tflite_render`: TFLite render latency, FLOPs and sizes, mobile search (`tflite_mobile`) and
  local-server throughput (`serving_load.benchmark_serving`).
- `tflite_profile`: time per TFLite op type against its FLOP share.
- `serving_load`: loopback load test of a PredictionService.
- `mobile_quality`: quality of the mobile network and of full-int8 under one training budget.
- `ablation`: the paper's table-4 ablation on the built-in chairs (`ablation_seeds`: over seeds;
  `ablation_warm_up`: its shared stage 1).
- `flow_signal`: the photometric loss, EPE and gain of a run's flows, the ground truth's and the
  zero flow's, on the built-in chairs.
- `flow_ceiling`: a preset's flow extractor trained on the ground-truth flow, scored on held-out
  tuples.
- `summary`: the layer table of `tfrf summary`.
- `request_size`: bytes of a served request (gRPC and REST JSON) and server time, `photos`
  signature against the dense one.
- `small_photos`: person detection on small crops per detection strategy, and false persons.

Shared by all: `flops` (the FLOP counter), `conv_throughput` (the conv-throughput probe),
`timing` (the timers), `inputs` (random generator inputs), `report` (print, write the JSON, fail in
one line).
"""
