// The face editor's page: a label map painted on a canvas (one canvas pixel per label pixel,
// shown enlarged), sent to the server for each model's synthesis. The server checks every
// request; this page shows its one-line errors as they come.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("labels");
const context = canvas.getContext("2d");
const MAX_UNDO = 30;

const state = {
  info: null,
  colors: [], // [r, g, b] of each class
  side: 0,
  labels: null, // side * side class indices, row by row
  pixels: null, // the canvas's ImageData, kept in step with `labels`
  paintClass: 1,
  brush: 12,
  lastPoint: null, // of the stroke being painted, in label pixels
  undo: [], // earlier {side, labels}
  style: null, // the style image's bytes, base64
};
const cards = []; // one per model: {model, figure, image, timing, busy, pending, version}

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function toBase64(bytes) {
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

// A request to the server: its JSON answer, or an Error with the server's one-line reason.
async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error(`the editor's server cannot be reached (${err.message})`);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(answer?.error ?? `${response.status} ${response.statusText}`);
  return answer;
}

// An uploaded file, POSTed as it is; refused here already when the server would refuse its size.
async function postFile(input, path) {
  const file = input.files[0];
  input.value = ""; // choosing the same file again is a new change
  const limit = state.info.max_request_bytes;
  if (file.size > limit) {
    throw new Error(`${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MiB, more than the editor takes (${limit / 2 ** 20} MiB)`);
  }
  return { file, answer: await api(path, { method: "POST", body: file }) };
}

// --- the label map ---------------------------------------------------------------------------

function setLabels(side, labels) {
  state.side = side;
  state.labels = labels;
  canvas.width = canvas.height = side;
  state.pixels = context.createImageData(side, side);
  for (let index = 0; index < labels.length; index++) colorPixel(index, labels[index]);
  context.putImageData(state.pixels, 0, 0);
}

function colorPixel(index, classIndex) {
  const [r, g, b] = state.colors[classIndex];
  state.pixels.data.set([r, g, b, 255], 4 * index);
}

function remember() {
  state.undo.push({ side: state.side, labels: state.labels.slice() });
  if (state.undo.length > MAX_UNDO) state.undo.shift();
}

function undo() {
  const previous = state.undo.pop();
  if (!previous) return;
  setLabels(previous.side, previous.labels);
  changed();
}

// A new label map from the server's answer {side, labels}; the photo it came from, if any.
function loadLabels(answer, photo) {
  if (state.labels) remember();
  setLabels(answer.side, fromBase64(answer.labels));
  $("photo").hidden = !photo;
  if (photo) {
    $("photo-image").src = photo.url;
    $("photo-caption").textContent = photo.caption;
  }
  changed();
}

function paintDisc(x, y) {
  const radius = state.brush / 2;
  const side = state.side;
  for (let row = Math.max(0, Math.floor(y - radius)); row <= Math.min(side - 1, Math.floor(y + radius)); row++) {
    for (let column = Math.max(0, Math.floor(x - radius)); column <= Math.min(side - 1, Math.floor(x + radius)); column++) {
      // pixel centres within the disc; a 1-pixel brush paints the pixel under the pointer
      const dx = column + 0.5 - x;
      const dy = row + 0.5 - y;
      if (dx * dx + dy * dy <= radius * radius || (row === Math.floor(y) && column === Math.floor(x))) {
        state.labels[row * side + column] = state.paintClass;
        colorPixel(row * side + column, state.paintClass);
      }
    }
  }
}

// Discs along the segment, close enough to leave no gaps however fast the pointer moved.
function paintSegment(from, to) {
  const length = Math.hypot(to.x - from.x, to.y - from.y);
  const steps = Math.max(1, Math.ceil(length / Math.max(0.5, state.brush / 4)));
  for (let step = 1; step <= steps; step++) {
    paintDisc(from.x + ((to.x - from.x) * step) / steps, from.y + ((to.y - from.y) * step) / steps);
  }
}

function labelPoint(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) / box.width) * state.side,
    y: ((event.clientY - box.top) / box.height) * state.side,
  };
}

function showHover(point) {
  const column = Math.floor(point.x);
  const row = Math.floor(point.y);
  if (column < 0 || row < 0 || column >= state.side || row >= state.side) return;
  const name = state.info.classes[state.labels[row * state.side + column]].name;
  $("hover").textContent = `${name} at (${column}, ${row}) of ${state.side}x${state.side}`;
}

function bindCanvas() {
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !state.labels) return;
    canvas.setPointerCapture(event.pointerId);
    remember();
    state.lastPoint = labelPoint(event);
    paintDisc(state.lastPoint.x, state.lastPoint.y);
    context.putImageData(state.pixels, 0, 0);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.labels) return;
    const point = labelPoint(event);
    showHover(point);
    if (!state.lastPoint) return;
    paintSegment(state.lastPoint, point);
    state.lastPoint = point;
    context.putImageData(state.pixels, 0, 0);
  });
  const endStroke = () => {
    if (!state.lastPoint) return;
    state.lastPoint = null;
    changed();
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
}

// --- synthesis -------------------------------------------------------------------------------

function changed() {
  if ($("auto").checked) synthesizeAll();
}

function synthesizeAll() {
  for (const card of cards) synthesize(card);
}

// One request per model at a time: a change made meanwhile is sent once that one is answered.
async function synthesize(card) {
  if (card.busy) {
    card.pending = true;
    return;
  }
  card.busy = true;
  card.figure.dataset.state = "busy";
  let failed = false;
  try {
    const request = {
      model: card.model.name,
      side: state.side,
      labels: toBase64(state.labels),
      seed: Number($("seed").value),
      style: card.model.vae ? state.style : null,
    };
    const answer = await api("/api/synthesize", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    card.image.src = answer.image;
    card.timing.textContent = `${Math.round(answer.seconds * 1000)} ms`;
  } catch (err) {
    failed = true;
    card.timing.textContent = "failed";
    showError(`${card.model.name}: ${err.message}`);
  }
  card.busy = false;
  card.version += 1;
  card.figure.dataset.version = card.version;
  if (card.pending) {
    card.pending = false;
    synthesize(card);
  } else {
    card.figure.dataset.state = failed ? "error" : "done";
  }
}

// --- controls --------------------------------------------------------------------------------

function buildPalette() {
  const palette = $("palette");
  for (const entry of state.info.classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.setAttribute("role", "radio");
    button.dataset.class = entry.index;
    button.setAttribute("aria-checked", entry.index === state.paintClass);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = entry.color;
    button.append(swatch, `${entry.index} ${entry.name}`);
    button.addEventListener("click", () => {
      state.paintClass = entry.index;
      for (const other of palette.children) other.setAttribute("aria-checked", other === button);
    });
    palette.append(button);
  }
}

function buildResults() {
  for (const model of state.info.models) {
    const figure = document.createElement("figure");
    figure.className = "result";
    figure.dataset.model = model.name;
    figure.dataset.state = "idle";
    figure.dataset.version = 0;
    const image = document.createElement("img");
    image.alt = `${model.name}'s face`;
    const caption = document.createElement("figcaption");
    const kind = model.vae ? "VAE: seed or style image" : model.noise ? "noise: seed" : "no noise input";
    caption.textContent = `${model.name} (${model.generator}, ${model.resolution} px, ${kind}) `;
    const timing = document.createElement("span");
    timing.className = "note";
    caption.append(timing);
    figure.append(image, caption);
    $("results").append(figure);
    cards.push({ model, figure, image, timing, busy: false, pending: false, version: 0 });
  }
}

function loadBlank() {
  const side = state.info.blank_side;
  loadLabels({ side, labels: toBase64(new Uint8Array(side * side)) }, null);
}

async function loadFace(imageId) {
  const path = `/api/faces/${encodeURIComponent(imageId)}`;
  loadLabels(await api(`${path}/labels`), { url: `${path}/photo`, caption: `Test face ${imageId}` });
}

// A control's action, its failure shown in the page.
function act(action) {
  return async (event) => {
    clearError();
    try {
      await action(event);
    } catch (err) {
      showError(err.message);
    }
  };
}

function bindControls() {
  $("error-close").addEventListener("click", clearError);
  $("load-face").addEventListener("click", act(() => loadFace($("face").value)));
  $("blank").addEventListener("click", act(loadBlank));
  $("label-file").addEventListener("change", act(async () => {
    const { answer } = await postFile($("label-file"), "/api/labels");
    loadLabels(answer, null);
  }));
  $("photo-file").addEventListener("change", act(async () => {
    const { file, answer } = await postFile($("photo-file"), "/api/parse");
    loadLabels(answer, { url: URL.createObjectURL(file), caption: `${file.name}, parsed` });
  }));
  $("style-file").addEventListener("change", act(async () => {
    const { file, answer } = await postFile($("style-file"), "/api/style");
    state.style = toBase64(new Uint8Array(await file.arrayBuffer()));
    $("style-image").src = answer.thumbnail;
    $("style").hidden = false;
    changed();
  }));
  $("style-clear").addEventListener("click", () => {
    state.style = null;
    $("style").hidden = true;
    changed();
  });
  $("seed").addEventListener("change", changed);
  $("synthesize").addEventListener("click", () => {
    clearError();
    synthesizeAll();
  });
  $("brush").addEventListener("input", () => {
    state.brush = Number($("brush").value);
    $("brush-size").textContent = state.brush;
  });
  $("undo").addEventListener("click", undo);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") {
      event.preventDefault();
      undo();
    }
  });
  bindCanvas();
}

async function start() {
  bindControls();
  try {
    state.info = await api("/api/info");
  } catch (err) {
    $("status").textContent = "The run could not be loaded.";
    showError(err.message);
    return;
  }
  const info = state.info;
  state.colors = info.classes.map((entry) => [1, 3, 5].map((at) => parseInt(entry.color.slice(at, at + 2), 16)));
  $("seed").max = info.max_seed;
  buildPalette();
  buildResults();
  for (const imageId of info.faces) $("face").append(new Option(imageId, imageId));
  $("load-face").disabled = info.faces.length === 0;
  $("photo-file").disabled = !info.parser.available;
  $("parser-note").textContent = info.parser.available ? info.parser.note : `Parsing is off: ${info.parser.note}.`;
  const names = info.models.map((model) => model.name).join(", ");
  $("status").textContent = `${info.models.length} models on ${info.device} (${names}); ${info.faces.length} test faces.`;
  await act(() => (info.faces.length ? loadFace(info.faces[0]) : loadBlank()))();
}

start();
