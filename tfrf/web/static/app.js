// tfrf web: the face export (encode_crops / render_landmarks) with LiteRT.js, the face tracked by
// MediaPipe face mesh, both in this page. Crops follow tfrf.pose.face.face_box / crop_face.
// A full-int8 face export has no landmark signatures: then (settings.drawing) the server's float32
// drawing model (/drawing.tflite: draw_crops, draw_target) draws the poses and the export runs
// encode_sources / render on them.
import {loadLiteRt, loadAndCompile, Tensor} from "@litertjs/core";

const $ = (id) => document.getElementById(id);
const stats = {frames: 0, faces: 0, ms_per_frame: 0, backend: "wasm"};
const times = {mesh_ms: [], model_ms: []};  // per frame, for benchmarks (window.tfrfTimes)
let settings = null, model = null, drawing = null, faceMesh = null, cache = null, driving = false, spentMs = 0, processed = 0;

function showStats() { $("stats").textContent = JSON.stringify(stats); }
function message(text, kind = "error") { $("message").textContent = text; $("message").dataset.kind = kind; }

async function loadRuntime() {
  const wasm = "/vendor/litertjs/core/wasm/";
  try {
    await loadLiteRt(wasm, {threads: self.crossOriginIsolated === true});
  } catch (error) {
    await loadLiteRt(wasm);  // no threads here: the single-threaded build
  }
  let accelerator = "wasm";
  if (navigator.gpu) {
    try { if (await navigator.gpu.requestAdapter()) accelerator = "webgpu"; } catch (error) { /* no adapter */ }
  }
  const compile = async () => {
    model = await loadAndCompile("/model.tflite", {accelerator});
    if (settings.drawing) drawing = await loadAndCompile("/drawing.tflite", {accelerator});
  };
  try {
    await compile();
  } catch (error) {
    if (accelerator === "wasm") throw error;
    accelerator = "wasm";
    await compile();
  }
  stats.backend = accelerator;
}

// ms of each of `calls` runs of one signature on random inputs (uniform in [0, 1), landmarks in
// [0, size), uint8 in [0, 255]), after three warm-ups (benchmarks; constant inputs would run
// into denormal floats, which WASM does not flush).
// A signature of the drawing model (draw_target, draw_crops) where the model has none of that name.
async function timeSignature(name, calls) {
  const runner = model.signatures[name] || !drawing ? model : drawing;
  const signature = runner.signatures[name], inputs = {}, times = [];
  for (const details of signature.getInputDetails()) {
    const size = details.shape.reduce((a, b) => a * b, 1);
    const scale = details.dtype === "uint8" ? 256 : (details.name.includes("landmarks") ? settings.size : 1);
    const data = details.dtype === "uint8" ? new Uint8Array(size) : new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = details.dtype === "uint8" ? Math.floor(Math.random() * scale) : Math.random() * scale;
    inputs[details.name] = new Tensor(data, Array.from(details.shape));
  }
  const once = async () => Object.values(await runner.run(name, inputs)).forEach((tensor) => tensor.delete());
  for (let i = 0; i < 3; i++) await once();
  for (let i = 0; i < calls; i++) {
    const began = performance.now();
    await once();
    times.push(performance.now() - began);
  }
  Object.values(inputs).forEach((tensor) => tensor.delete());
  return times;
}

// 68 (x, y) pixels of the face in `image` (width x height), or null (the tracker of mesh.html).
function detect(image, width, height) {
  return faceMesh.detect(image, width, height, settings.mediapipe_to_68);
}

async function loadTracker() {
  const frame = $("mesh");
  while (!(frame.contentWindow && frame.contentWindow.tracker)) await new Promise((resolve) => setTimeout(resolve, 50));
  faceMesh = frame.contentWindow.tracker;
  await faceMesh.ready;
}

// tfrf.pose.face.face_box: (left, top, side) of the square around the landmarks plus the margin.
function faceBox(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const low = [Math.min(...xs), Math.min(...ys)], high = [Math.max(...xs), Math.max(...ys)];
  const side = Math.ceil(Math.max(Math.max(high[0] - low[0], high[1] - low[1]) * (1 + 2 * settings.margin), 1));
  const left = Math.floor((low[0] + high[0]) / 2 - side / 2 + 0.5), top = Math.floor((low[1] + high[1]) / 2 - side / 2 + 0.5);
  return [left, top, side];
}

// Landmarks in crop pixels (tfrf.animation.face.landmarks_in_crop), flattened.
function inCrop(points, box) {
  const [left, top, side] = box, scale = settings.size / side, out = new Float32Array(points.length * 2);
  points.forEach(([x, y], i) => { out[2 * i] = (x - left + 0.5) * scale - 0.5; out[2 * i + 1] = (y - top + 0.5) * scale - 0.5; });
  return out;
}

function cropPixels(image, box) {  // uint8 RGB [size, size, 3] of the box, outside black
  const size = settings.size, canvas = new OffscreenCanvas(size, size), context = canvas.getContext("2d");
  context.fillStyle = "black";
  context.fillRect(0, 0, size, size);
  context.drawImage(image, box[0], box[1], box[2], box[2], 0, 0, size, size);
  const rgba = context.getImageData(0, 0, size, size).data, rgb = new Uint8Array(size * size * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4) { rgb[j++] = rgba[i]; rgb[j++] = rgba[i + 1]; rgb[j++] = rgba[i + 2]; }
  return rgb;
}

// The cached encoding {source_images, source_poses, source_features_h8, source_features_h4}: from
// encode_crops, or with the drawing model from draw_crops -> encode_sources.
async function encodeCrops(inputs) {
  if (!drawing) return model.run("encode_crops", inputs);
  const drawn = await drawing.run("draw_crops", inputs);
  try {
    return {...drawn, ...(await model.run("encode_sources", {source_images: drawn.source_images}))};
  } catch (error) {
    Object.values(drawn).forEach((tensor) => tensor.delete());
    throw error;
  }
}

async function encode(crops, landmarks) {  // Uint8Array K*H*W*3, Float32Array K*68*2 -> the cached encoding
  const k = settings.num_sources, size = settings.size;
  const inputs = {source_crops: new Tensor(crops, [k, size, size, 3]), source_landmarks: new Tensor(landmarks, [k, 68, 2])};
  try {
    const encoded = await encodeCrops(inputs);
    if (cache) Object.values(cache).forEach((tensor) => tensor.delete());
    cache = encoded;
  } finally {
    Object.values(inputs).forEach((tensor) => tensor.delete());
  }
}

async function renderOutputs(landmarks) {  // render_landmarks, or with the drawing model draw_target -> render
  if (!drawing) return model.run("render_landmarks", {...cache, target_landmarks: landmarks});
  const {target_pose} = await drawing.run("draw_target", {target_landmarks: landmarks});
  try {
    return await model.run("render", {...cache, target_pose});
  } finally {
    target_pose.delete();
  }
}

async function render(target) {  // Float32Array 68*2 -> Float32Array [H, W, 3] in [-1, 1]
  const landmarks = new Tensor(target, [68, 2]);
  let outputs;
  try {
    outputs = await renderOutputs(landmarks);
  } finally {
    landmarks.delete();
  }
  const image = await outputs.image.moveTo("wasm");
  const values = image.toTypedArray().slice();
  image.delete();
  return values;
}

function show(values) {
  const size = settings.size, canvas = $("output");
  canvas.width = canvas.height = size;
  const context = canvas.getContext("2d"), pixels = context.createImageData(size, size);
  for (let i = 0, j = 0; i < values.length; i += 3, j += 4) {
    for (let c = 0; c < 3; c++) pixels.data[j + c] = Math.max(0, Math.min(255, Math.round((values[i + c] + 1) * 127.5)));
    pixels.data[j + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}

async function useSources(files) {
  const k = settings.num_sources, size = settings.size;
  const crops = new Uint8Array(k * size * size * 3), landmarks = new Float32Array(k * 136);
  if (!files.length) return;
  for (let i = 0; i < k; i++) {  // K as exported: the photos in turn
    const file = files[i % files.length], image = await createImageBitmap(file);
    faceMesh.reset();
    const points = await detect(image, image.width, image.height);
    if (!points) { message(`No face found in the photo ${file.name}: pick a photo with one face.`); return; }
    const box = faceBox(points);
    crops.set(cropPixels(image, box), i * size * size * 3);
    landmarks.set(inCrop(points, box), i * 136);
  }
  await encode(crops, landmarks);
  faceMesh.reset();
  message(`Sources ready (${files.length} photo(s) for K = ${k}).`, "info");
}

async function drive() {
  if (driving) return;
  driving = true;
  const video = $("input");
  while (driving) {
    await new Promise((resolve) => (video.requestVideoFrameCallback ? video.requestVideoFrameCallback(resolve) : requestAnimationFrame(resolve)));
    if (!video.videoWidth) continue;
    const began = performance.now();
    const frame = await createImageBitmap(video);  // the tracker's frame takes bitmaps, not this page's video
    const points = await detect(frame, frame.width, frame.height);
    frame.close();
    const meshed = performance.now();
    if (!points) { message("No face in the camera image.", "info"); continue; }
    stats.faces += 1;
    if (!cache) { message("Pick source photos to animate.", "info"); continue; }
    show(await render(inCrop(points, faceBox(points))));
    const done = performance.now();
    times.mesh_ms.push(meshed - began);
    times.model_ms.push(done - meshed);
    stats.frames += 1;
    processed += 1;
    spentMs += done - began;
    stats.ms_per_frame = Math.round((spentMs / processed) * 100) / 100;
    showStats();
  }
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    const video = $("input");
    video.srcObject = stream;
    await video.play();
  } catch (error) {
    message(`The camera cannot be used (${error.name}: ${error.message}); allow it, or pick a video file.`);
    return;
  }
  drive().catch((error) => message(`Animation stopped: ${error.message || error}`));
}

function startVideo(file) {
  const video = $("input");
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  video.loop = true;
  video.play().then(() => drive().catch((error) => message(`Animation stopped: ${error.message || error}`)))
    .catch((error) => message(`The video cannot be played: ${error.message}`));
}

async function main() {
  showStats();
  settings = await (await fetch("/settings.json")).json();
  try {
    await loadRuntime();
  } catch (error) {
    $("status").textContent = "not ready";
    message(`The model cannot be read: ${error.message || error}`);
    return;
  }
  window.tfrfTimes = times;
  window.tfrfTest = {  // for tests and benchmarks
    timeSignature,
    async renderFixed(crops, landmarks, target) {  // fixed crops and landmarks in, the generated image out
      await encode(Uint8Array.from(crops), Float32Array.from(landmarks));
      return Array.from(await render(Float32Array.from(target)));
    },
    async runSignature(name, values) {  // flat arrays in and out by tensor name (the drawing model's too)
      const runner = model.signatures[name] || !drawing ? model : drawing, inputs = {}, result = {};
      for (const details of runner.signatures[name].getInputDetails()) {
        const data = details.dtype === "uint8" ? Uint8Array.from(values[details.name]) : Float32Array.from(values[details.name]);
        inputs[details.name] = new Tensor(data, Array.from(details.shape));
      }
      try {
        for (const [key, tensor] of Object.entries(await runner.run(name, inputs))) {
          const moved = await tensor.moveTo("wasm");
          result[key] = Array.from(moved.toTypedArray());
          moved.delete();
        }
      } finally {
        Object.values(inputs).forEach((tensor) => tensor.delete());
      }
      return result;
    },
  };
  const needed = drawing ? [[model, "encode_sources"], [model, "render"], [drawing, "draw_crops"], [drawing, "draw_target"]]
    : [[model, "encode_crops"], [model, "render_landmarks"]];
  const missing = needed.filter(([runner, name]) => !runner.signatures[name]).map(([, name]) => name);
  if (missing.length) {
    $("status").textContent = "not ready";
    message(`The model has no ${missing.join(" / ")} signature: export a face model with tfrf export tflite.`);
    document.body.dataset.ready = "model-only";
    return;
  }
  await loadTracker();
  $("photos").addEventListener("change", (event) => useSources([...event.target.files]).catch((e) => message(e.message)));
  $("camera").addEventListener("click", startCamera);
  $("video-file").addEventListener("change", (event) => event.target.files[0] && startVideo(event.target.files[0]));
  $("status").textContent = `ready (${stats.backend}, ${settings.size}x${settings.size}, K = ${settings.num_sources}${drawing ? ", poses from the drawing model" : ""})`;
  document.body.dataset.ready = "1";
}

main();
