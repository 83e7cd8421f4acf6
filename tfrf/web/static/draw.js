// The pose drawing of 68 face landmarks in JavaScript: tfrf.pose.face.draw_landmarks(points, H, W) / 255,
// pixel for pixel, as tfrf.pose.face_graph.draw_landmarks_graph computes it in the exports' graphs
// (Pillow's rasterisation: points rounded half to even; width 1: Bresenham per segment without its
// end point, plus the last point of each line; wider: each segment the quadrilateral of
// ImagingDrawWideLine, filled by Pillow's scan line with float32 edge crossings). Here per segment
// and row, only over the rows a segment can touch: about 1 ms at 256 x 256 where the graph costs 10.
//
// `table` comes from the server's settings (tfrf.web.server.drawing_table): segment start and end
// landmarks, and per part (in Pillow's drawing order) its segment range, colour and line tips.

const BIG = 60000;
const f32 = Math.fround;

function sign(value) { return value < 0 ? -1 : 1; }  // of integers; 1 for 0
function roundHalfEven(value) {
  const floor = Math.floor(value), fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
function roundf(value) {  // C's roundf: half away from zero
  const magnitude = Math.abs(value), whole = Math.floor(magnitude);
  return (value >= 0 ? 1 : -1) * (whole + (magnitude - whole >= 0.5 ? 1 : 0));
}
function roundUp(value) {  // Pillow's ROUND_UP: floor(f + 0.5F) in float32 for f >= 0
  if (value >= 0) return Math.floor(f32(value + 0.5));
  const magnitude = Math.abs(value), whole = Math.floor(magnitude);
  return -(whole + (magnitude - whole >= 0.5 ? 1 : 0));
}
function roundDown(value) {  // Pillow's ROUND_DOWN: ceil(f - 0.5F) in float32 for f >= 0
  if (value >= 0) return -Math.floor(f32(0.5 - value));
  const magnitude = Math.abs(value), whole = Math.floor(magnitude);
  return -(whole + (magnitude - whole > 0.5 ? 1 : 0));
}
function floorDiv(numerator, denominator) { return Math.floor((numerator + 0.5) / denominator); }

// Pillow's 1-px line (end point excluded) on `row`: [a, b] or null.
function bresenhamSpan(x0, y0, x1, y1, row) {
  const dx = x1 - x0, dy = y1 - y0, adx = Math.abs(dx), ady = Math.abs(dy), xs = sign(dx);
  if (Math.max(adx, ady) === 0) return null;
  const step = (row - y0) * sign(dy);
  if (adx > ady) {  // x-major: the steps i whose row is `step`
    const twoDy = Math.max(2 * ady, 1);
    let first, last;
    if (ady === 0) {
      first = step === 0 ? 0 : BIG;
      last = adx - 1;
    } else {
      first = Math.max(floorDiv(adx * (2 * step - 1) + twoDy - 1, twoDy), 0);
      last = Math.min(floorDiv(adx * (2 * step + 1) + twoDy - 1, twoDy) - 1, adx - 1);
    }
    if (last < first) return null;
    const a = x0 + xs * first, b = x0 + xs * last;
    return [Math.min(a, b), Math.max(a, b)];
  }
  if (!(step >= 0 && ady > step)) return null;  // y-major: one pixel per row
  const column = x0 + xs * floorDiv(2 * adx * step + ady, Math.max(2 * ady, 1));
  return [column, column];
}

// ROUND_DOWN(radius / hypot * along) for along >= 0, exactly: the odd m < 2 radius with m^2 hypot^2 < 4 radius^2 along^2.
function roundDownRatio(radius, along, squared) {
  let count = 0;
  for (let odd = 1; odd < 2 * radius; odd += 2) if (4 * radius * radius * along * along > odd * odd * squared) count += 1;
  return count;
}

// The edges of ImagingDrawWideLine's quadrilateral for one segment.
function wideEdges(x0, y0, x1, y1, lineWidth) {
  const half = (lineWidth - 1) / 2, rMax = Math.floor(half + 0.5), rMin = Math.ceil(half - 0.5);
  const dx = x1 - x0, dy = y1 - y0, squared = dx * dx + dy * dy;
  const offset = (radius, along) => (radius ? sign(along) * roundDownRatio(radius, Math.abs(along), squared) : 0);
  const dxMin = offset(rMin, dy), dxMax = offset(rMax, dy), dyMin = offset(rMin, dx), dyMax = offset(rMax, dx);
  const vertices = [[x0 - dxMin, y0 + dyMax], [x1 - dxMin, y1 + dyMax], [x1 + dxMax, y1 - dyMin], [x0 + dxMax, y0 - dyMin]];
  return vertices.map(([ex0, ey0], index) => {
    const [ex1, ey1] = vertices[(index + 1) % 4], flat = ey0 === ey1;
    return {x0: ex0, y0: ey0, ymin: Math.min(ey0, ey1), ymax: Math.max(ey0, ey1), xmin: Math.min(ex0, ex1),
            xmax: Math.max(ex0, ex1), flat, slanted: ex0 !== ex1, dx: f32((ex1 - ex0) / (ey1 - ey0 + (flat ? 1 : 0)))};
  });
}

const crossing = (edge, row) => f32(f32((row - edge.y0) * edge.dx) + edge.x0);  // float32, as Pillow

// Pillow's polygon scan line of one wide segment on `row`: up to four [a, b] spans, pushed onto `out`.
function wideSpans(edges, row, out) {
  const top = Math.max(edges[0].ymax, edges[1].ymax, edges[2].ymax, edges[3].ymax), values = [];
  let count = 0;
  edges.forEach((edge, i) => {
    const active = !edge.flat && row >= edge.ymin && row <= edge.ymax;
    const atTop = row === edge.ymax, double = active && atTop && top > row;
    const corner = active && !double && (row === edge.ymin || atTop) && edge.slanted;
    const x = crossing(edge, row);
    let value = x, done = false;
    const beside = atTop ? row - 1 : row + 1;  // the next row, or the previous one at the edge's end
    for (let j = 0; j < i && corner; j++) {  // Pillow's "connect discontiguous corners"
      const other = edges[j];
      if (done || other.flat || !other.slanted || !(row === other.ymin || row === other.ymax)) continue;
      if (roundf(value) !== roundf(crossing(other, row))) continue;
      if (!(beside >= other.ymin && other.ymax >= beside)) continue;
      const mine = crossing(edge, beside), theirs = crossing(other, beside);
      if (value > f32(mine + 1) && value > f32(theirs + 1)) value = roundf(Math.max(mine, theirs)) + 1;
      else if (value < f32(mine - 1) && value < f32(theirs - 1)) value = roundf(Math.min(mine, theirs)) - 1;
      done = true;
    }
    if (active) values.push(value);
    if (double) values.push(x);
    count += (active ? 1 : 0) + (double ? 1 : 0);
  });
  const flatPair = edges[0].flat || edges[1].flat;
  values.sort((a, b) => a - b);
  for (let p = 0; p < (flatPair ? 2 : 4); p++) {
    if (count > 2 * p + 1) out.push(roundUp(values[2 * p]), roundDown(values[2 * p + 1]));
  }
  if (flatPair) {  // the two horizontal edges (0 and 2, or 1 and 3), drawn whole on their row
    for (const edge of [edges[0].flat ? edges[0] : edges[1], edges[2].flat ? edges[2] : edges[3]]) {
      if (row === edge.ymin) out.push(edge.xmin, edge.xmax);
    }
  }
}

function paint(image, width, row, a, b, color) {  // pixels a..b of `row`, clipped to the image
  const start = Math.max(a, 0), end = Math.min(b, width - 1);
  for (let x = start, i = (row * width + start) * 3; x <= end; x++, i += 3) {
    image[i] = color[0]; image[i + 1] = color[1]; image[i + 2] = color[2];
  }
}

export function defaultLineWidth(height, width) { return Math.max(1, Math.round(Math.min(height, width) / 128)); }

// Float32Array [H, W, 3] in {0, 1} of `landmarks` (68 * 2 floats, x and y in pixels); written into
// `image` (zeroed first) when given.
export function drawLandmarks(landmarks, height, width, table, lineWidth = defaultLineWidth(height, width), image = null) {
  image = image || new Float32Array(height * width * 3);
  image.fill(0);
  const points = Array.from(landmarks, (value) => roundHalfEven(Math.fround(value)));
  const spans = [];
  for (const part of table.parts) {
    const color = part.color.map((value) => f32(value / 255));
    for (let s = part.first; s < part.last; s++) {
      const x0 = points[2 * table.starts[s]], y0 = points[2 * table.starts[s] + 1];
      const x1 = points[2 * table.ends[s]], y1 = points[2 * table.ends[s] + 1];
      const reach = lineWidth + 2, edges = lineWidth > 1 ? wideEdges(x0, y0, x1, y1, lineWidth) : null;
      const firstRow = Math.max(0, Math.min(y0, y1) - reach), lastRow = Math.min(height - 1, Math.max(y0, y1) + reach);
      for (let row = firstRow; row <= lastRow; row++) {
        spans.length = 0;
        if (edges) wideSpans(edges, row, spans);
        else { const span = bresenhamSpan(x0, y0, x1, y1, row); if (span) spans.push(span[0], span[1]); }
        for (let k = 0; k < spans.length; k += 2) paint(image, width, row, spans[k], spans[k + 1], color);
      }
    }
    if (lineWidth === 1) {  // Pillow's 1-px lines end with their last point
      for (const tip of part.tips) {
        const x = points[2 * tip], y = points[2 * tip + 1];
        if (y >= 0 && y < height) paint(image, width, y, x, x, color);
      }
    }
  }
  return image;
}

// Float32Array of uint8 RGB crops as the exports' encoder takes them: c / 127.5 - 1 in float32.
export function sourceImages(crops) {
  const out = new Float32Array(crops.length);
  for (let i = 0; i < crops.length; i++) out[i] = f32(f32(crops[i] / 127.5) - 1);
  return out;
}
