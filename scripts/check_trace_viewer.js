// Checks for scripts/check-trace-viewer.sh, in Node (no packages):
//
//   node check_trace_viewer.js profile EXPORT.json OUT.js
//       writes the page script speedscope's own CLI writes
//       (speedscope.loadFileFromBase64(name, base64)), which its page loads
//       from #localProfilePath=OUT.js.
//   node check_trace_viewer.js dom EXPORT.json DOM.html
//       reads the page speedscope rendered (headless Chromium --dump-dom,
//       sandwich view) and checks that the profile it built holds the
//       export's spans: a profile per thread track, named after it, whose
//       total weight is the time its slices cover (within 0.1 ms), and span
//       names with their durations in the symbol table.
//   node check_trace_viewer.js png SHOT.png
//       checks that a screenshot is not blank: a PNG with many colours and
//       enough pixels away from the background.
'use strict';
const fs = require('fs');
const zlib = require('zlib');

function fail(message) {
  console.error('check-trace-viewer: FAILED: ' + message);
  process.exit(1);
}

function profile(exportPath, out) {
  const b64 = fs.readFileSync(exportPath).toString('base64');
  fs.writeFileSync(
    out,
    'speedscope.loadFileFromBase64(' + JSON.stringify('lock-gap.json') + ', ' + JSON.stringify(b64) + ')\n',
  );
}

/// The time each track's outermost slices cover, in ms.
function coveredByTrack(trace) {
  const names = new Map();
  const slices = new Map();
  for (const e of trace.traceEvents) {
    if (e.ph === 'M' && e.name === 'thread_name') names.set(e.tid, e.args.name);
    if (e.ph === 'X') {
      if (!slices.has(e.tid)) slices.set(e.tid, []);
      slices.get(e.tid).push([e.ts, e.ts + e.dur]);
    }
  }
  const out = new Map();
  for (const [tid, list] of slices) {
    list.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let total = 0;
    let end = -Infinity;
    for (const [s, e] of list) {
      if (s >= end) {
        total += e - s;
        end = e;
      } else if (e > end) {
        total += e - end;
        end = e;
      }
    }
    out.set(names.get(tid) || 'thread ' + tid, total / 1000);
  }
  return out;
}

/// speedscope prints durations as "122.51ms", "849.45µs", "1.20s".
function ms(text) {
  const m = /^([0-9.]+)(ms|µs|s)$/.exec(text);
  if (!m) return null;
  const v = parseFloat(m[1]);
  return m[2] === 'ms' ? v : m[2] === 'µs' ? v / 1000 : v * 1000;
}

function dom(exportPath, domPath) {
  const trace = JSON.parse(fs.readFileSync(exportPath, 'utf8'));
  const html = fs.readFileSync(domPath, 'utf8');
  const text = html
    .replace(/<style[\s\S]*?<\/style>/g, '')
    .replace(/<script[\s\S]*?<\/script>/g, '')
    .split(/<[^>]+>/)
    .map(s => s.trim())
    .filter(s => s.length > 0)
    .map(s => s.replace(/&quot;/g, '"').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
  const covered = coveredByTrack(trace);
  if (covered.size === 0) fail('the export has no slices');
  // The profile list: "PROGRAM (pid P), THREAD (tid T)" then its total weight.
  let checked = 0;
  for (const [thread, want] of covered) {
    const i = text.findIndex(t => t.includes(', ' + thread + ' (tid '));
    if (i < 0) fail(`speedscope has no profile for thread ${thread}`);
    const j = text.slice(i + 1).findIndex(t => ms(t) !== null);
    const got = j < 0 ? null : ms(text[i + 1 + j]);
    if (got === null || Math.abs(got - want) > 0.1) {
      fail(`thread ${thread}: speedscope's total ${got} ms, the export's slices cover ${want.toFixed(3)} ms`);
    }
    console.log(`check-trace-viewer: speedscope profile '${thread}': ${got} ms (the export: ${want.toFixed(3)} ms)`);
    checked++;
  }
  // The symbol table of the profile shown: span names, each with a time.
  const spanNames = new Set(trace.traceEvents.filter(e => e.ph === 'X').map(e => e.name));
  const rows = [];
  for (let i = 2; i < text.length; i++) {
    const name = text[i].split(' {')[0];
    if (spanNames.has(name) && ms(text[i - 1].split(' ')[0]) !== null) {
      rows.push([name, text[i - 1]]);
    }
  }
  if (rows.length === 0) fail('speedscope shows no span by name with a duration');
  console.log(`check-trace-viewer: speedscope shows spans by name: ${rows.slice(0, 3).map(r => r[0] + ' ' + r[1]).join('; ')}`);
  console.log(`check-trace-viewer: ${checked} thread profiles checked`);
}

function png(path) {
  const b = fs.readFileSync(path);
  if (b.length < 8 || b.readUInt32BE(0) !== 0x89504e47) fail(`${path} is not a PNG`);
  let at = 8;
  let width = 0, height = 0, depth = 0, colour = 0;
  const idat = [];
  while (at < b.length) {
    const len = b.readUInt32BE(at);
    const type = b.toString('ascii', at + 4, at + 8);
    const data = b.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8];
      colour = data[9];
      if (data[12] !== 0) fail('interlaced PNG');
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    at += 12 + len;
  }
  const channels = { 2: 3, 6: 4 }[colour];
  if (depth !== 8 || !channels) fail(`PNG colour type ${colour}, depth ${depth}: not RGB(A) 8-bit`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x];
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const up = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      let p;
      switch (filter) {
        case 0: p = v; break;
        case 1: p = v + a; break;
        case 2: p = v + up; break;
        case 3: p = v + ((a + up) >> 1); break;
        case 4: {
          const pa = Math.abs(up - c), pb = Math.abs(a - c), pc = Math.abs(a + up - 2 * c);
          p = v + (pa <= pb && pa <= pc ? a : pb <= pc ? up : c);
          break;
        }
        default: fail(`PNG filter ${filter}`);
      }
      pixels[y * stride + x] = p & 0xff;
    }
  }
  const counts = new Map();
  for (let i = 0; i < pixels.length; i += channels) {
    const key = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const background = Math.max(...counts.values());
  const other = 1 - background / (width * height);
  console.log(`check-trace-viewer: screenshot ${width}x${height}, ${counts.size} colours, ${(other * 100).toFixed(1)}% of pixels not the background`);
  if (counts.size < 16 || other < 0.05) fail('the screenshot is blank');
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'profile') profile(a, b);
else if (mode === 'dom') dom(a, b);
else if (mode === 'png') png(a);
else fail('usage: profile|dom|png ...');
