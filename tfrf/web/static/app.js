// tfrf web: a face export (encode_sources / render) with LiteRT.js, the face tracked by MediaPipe
// face mesh, both in this page. Crops follow tfrf.pose.face.face_box / crop_face; the poses are
// drawn here (draw.js: tfrf.pose.face.draw_landmarks pixel for pixel, what the exports'
// encode_crops / render_landmarks draw in their graphs), so float and full-int8 exports run alike.
import {loadLiteRt, loadAndCompile, Tensor} from "@litertjs/core";
import {defaultLineWidth, drawLandmarks, sourceImages} from "/draw.js";

const $ = (id) => document.getElementById(id);
const stats = {frames: 0, faces: 0, ms_per_frame: 0, backend: "wasm"};
const times = {mesh_ms: [], model_ms: []};  // per frame, for benchmarks (window.tfrfTimes)
let settings = null, model = null, faceMesh = null, cache = null, driving = false, spentMs = 0, processed = 0;
let targetPose = null, pixels = null;  // buffers reused frame to frame

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
  try {
    model = await loadAndCompile("/model.tflite", {accelerator});
  } catch (error) {
    if (accelerator === "wasm") throw error;
    accelerator = "wasm";
    model = await loadAndCompile("/model.tflite", {accelerator});
  }
  stats.backend = accelerator;
}

// ms of each of `calls` runs of one signature on random inputs (uniform in [0, 1), landmarks in
// [0, size), uint8 in [0, 255]), after three warm-ups (benchmarks; constant inputs would run
// into denormal floats, which WASM does not flush).
async function timeSignature(name, calls) {
  const signature = model.signatures[name], inputs = {}, times = [];
  for (const details of signature.getInputDetails()) {
    const size = details.shape.reduce((a, b) => a * b, 1);
    const scale = details.dtype === "uint8" ? 256 : (details.name.includes("landmarks") ? settings.size : 1);
    const data = details.dtype === "uint8" ? new Uint8Array(size) : new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = details.dtype === "uint8" ? Math.floor(Math.random() * scale) : Math.random() * scale;
    inputs[details.name] = new Tensor(data, Array.from(details.shape));
  }
  const once = async () => Object.values(await model.run(name, inputs)).forEach((tensor) => tensor.delete());
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

// Camera frames reach the tracker with their longer side at most TRACKER_SIDE pixels (the page's
// ?tracker_side=, 0: as they come): the face mesh's cost grows with the frame (512 x 512: 18.9 ms
// per frame whole, 14.5 ms at half size, 2 cores), while its detector sees 128 px and its
// landmark network 192 px of the face. Measured on a 512 x 512 photo whose face box is 140 px:
// landmarks move 0.2 px (3/4 size) and 0.55 px (half) on average in the 256-px crop. Source
// photos are tracked whole.
const TRACKER_SIDE = Number(new URLSearchParams(location.search).get("tracker_side") ?? 320);
function trackerScale(width, height) { return TRACKER_SIDE > 0 ? Math.min(1, TRACKER_SIDE / Math.max(width, height)) : 1; }

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

// The pose drawing of `landmarks` (68 * 2) into `out` (Float32Array [H, W, 3]), or a new one.
function draw(landmarks, out = null) {
  const height = settings.size, width = settings.width;
  return drawLandmarks(landmarks, height, width, settings.drawing_table, defaultLineWidth(height, width), out);
}

// The cached encoding {source_images, source_poses, source_features_h8, source_features_h4}: by the
// export's encode_crops (float exports draw in their graph), or the crops and their poses drawn
// here and encode_sources of the crops (full-int8 exports have no landmark signatures).
async function encodeCrops(crops, landmarks) {  // Uint8Array K*H*W*3, Float32Array K*68*2
  const k = settings.num_sources, height = settings.size, width = settings.width;
  if (model.signatures.encode_crops) {
    const inputs = {source_crops: new Tensor(crops, [k, height, width, 3]), source_landmarks: new Tensor(landmarks, [k, 68, 2])};
    try {
      return await model.run("encode_crops", inputs);
    } finally {
      Object.values(inputs).forEach((tensor) => tensor.delete());
    }
  }
  const plane = height * width * 3, poses = new Float32Array(k * plane);
  for (let i = 0; i < k; i++) draw(landmarks.subarray(i * 136, (i + 1) * 136), poses.subarray(i * plane, (i + 1) * plane));
  const encoded = {source_images: new Tensor(sourceImages(crops), [1, k, height, width, 3]),
                   source_poses: new Tensor(poses, [1, k, height, width, 3])};
  try {
    return Object.assign(encoded, await model.run("encode_sources", {source_images: encoded.source_images}));
  } catch (error) {
    Object.values(encoded).forEach((tensor) => tensor.delete());
    throw error;
  }
}

async function encode(crops, landmarks) {
  const encoded = await encodeCrops(crops, landmarks);
  if (cache) Object.values(cache).forEach((tensor) => tensor.delete());
  cache = encoded;
}

// render_landmarks where the export has it, else the pose drawn here -> render.
async function renderOutputs(target) {
  const landmarks = !!model.signatures.render_landmarks, input = landmarks ? new Tensor(target, [68, 2])
    : new Tensor(targetPose = draw(target, targetPose), [1, settings.size, settings.width, 3]);
  try {
    return await model.run(landmarks ? "render_landmarks" : "render", {...cache, [landmarks ? "target_landmarks" : "target_pose"]: input});
  } finally {
    input.delete();
  }
}

// Float32Array 68*2 -> use(Float32Array [H, W, 3] in [-1, 1], a view valid during the call)
async function render(target, use) {
  const outputs = await renderOutputs(target);
  const image = await outputs.image.moveTo("wasm");
  try {
    return use(image.toTypedArray());
  } finally {
    image.delete();
  }
}

function show(values) {  // [-1, 1] -> the canvas (sized once; Uint8ClampedArray clamps and rounds)
  const canvas = $("output"), context = canvas.getContext("2d");
  if (!pixels) {
    canvas.width = settings.width;
    canvas.height = settings.size;
    pixels = context.createImageData(settings.width, settings.size);
    for (let j = 3; j < pixels.data.length; j += 4) pixels.data[j] = 255;
  }
  const data = pixels.data;
  for (let i = 0, j = 0; i < values.length; i += 3, j += 4) {
    data[j] = (values[i] + 1) * 127.5; data[j + 1] = (values[i + 1] + 1) * 127.5; data[j + 2] = (values[i + 2] + 1) * 127.5;
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
    // the tracker's frame takes bitmaps, not this page's video; landmarks come back in video pixels
    const width = video.videoWidth, height = video.videoHeight, scale = trackerScale(width, height);
    const frame = await createImageBitmap(video, scale < 1 ? {resizeWidth: Math.round(width * scale), resizeHeight: Math.round(height * scale)} : {});
    const points = await detect(frame, width, height);
    frame.close();
    const meshed = performance.now();
    if (!points) { message("No face in the camera image.", "info"); continue; }
    stats.faces += 1;
    if (!cache) { message("Pick source photos to animate.", "info"); continue; }
    await render(inCrop(points, faceBox(points)), show);
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
      return render(Float32Array.from(target), (values) => Array.from(values));
    },
    async drawLandmarks(landmarks, height, width, lineWidth) {  // draw.js on its own: base64 of float32 [H, W, 3]
      lineWidth = lineWidth ?? defaultLineWidth(height, width);
      const bytes = new Uint8Array(drawLandmarks(Float32Array.from(landmarks), height, width, settings.drawing_table, lineWidth).buffer);
      let text = "";
      for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
      return btoa(text);
    },
    async timeDrawing(calls) {  // ms of each of `calls` target drawings of random landmarks in the crop
      const landmarks = new Float32Array(136), times = [];
      for (let i = 0; i < calls + 3; i++) {
        for (let j = 0; j < 136; j++) landmarks[j] = Math.random() * settings.size;
        const began = performance.now();
        targetPose = draw(landmarks, targetPose);
        if (i >= 3) times.push(performance.now() - began);
      }
      return times;
    },
    async runSignature(name, values) {  // flat arrays in and out by tensor name
      const inputs = {}, result = {};
      for (const details of model.signatures[name].getInputDetails()) {
        const data = details.dtype === "uint8" ? Uint8Array.from(values[details.name]) : Float32Array.from(values[details.name]);
        inputs[details.name] = new Tensor(data, Array.from(details.shape));
      }
      try {
        for (const [key, tensor] of Object.entries(await model.run(name, inputs))) {
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
  const missing = ["encode_sources", "render"].filter((name) => !model.signatures[name]);
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
  $("status").textContent = `ready (${stats.backend}, ${settings.size}x${settings.size}, K = ${settings.num_sources}${model.signatures.render_landmarks ? "" : ", poses drawn in the page"})`;
  document.body.dataset.ready = "1";
}

main();
