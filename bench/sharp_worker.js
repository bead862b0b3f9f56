// sharp reference worker (the seed's library): `node bench/sharp_worker.js IMAGE [derive|independent]`.
// Speaks the line protocol of bench/worker_protocol.py: a {"ready"} line, then one JSON line per
// "run" on stdin, and {"maxrss_kb"} on "quit".
//
// Modes:
//   derive       (default) decode once into the largest cover crop, derive the smaller
//                renditions from its pixels, encode all six outputs concurrently: the same
//                plan as imgpipe, and sharp's fastest way to do this job.
//   independent  one pipeline per output from the source bytes, as sharp's README shows it
//                (each one shrinks on load, so JPEG sources stay cheap; PNG/WebP decode 6 times).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");
const sharp = require(path.join(__dirname, "node_modules", "sharp"));

const SIZES = [512, 256, 128];
const JPEG_QUALITY = 82;
const WEBP_QUALITY = 80;
const WHITE = { r: 255, g: 255, b: 255 };

// Without this libvips' operation cache would serve iterations 2..N from memory.
sharp.cache(false);

function vmRssKb() {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) : 0;
}

function encodeBoth(img, name, width, height) {
  // JPEG has no alpha: flatten onto white, as imgpipe does; sharp strips metadata by default.
  return [
    img.clone().flatten({ background: WHITE }).jpeg({ quality: JPEG_QUALITY }).toBuffer()
      .then((b) => [name, "jpeg", width, height, b]),
    img.clone().webp({ quality: WEBP_QUALITY }).toBuffer().then((b) => [name, "webp", width, height, b]),
  ];
}

async function derive(data) {
  const largest = SIZES[0];
  const base = await sharp(data)
    .autoOrient()
    .resize(largest, largest, { fit: "cover", position: "centre" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const pixels = [base];
  for (const size of SIZES.slice(1)) {
    pixels.push(
      await sharp(base.data, { raw: base.info })
        .resize(size, size, { fit: "cover", position: "centre" })
        .raw()
        .toBuffer({ resolveWithObject: true }),
    );
  }
  const jobs = pixels.flatMap(({ data: raw, info }) =>
    encodeBoth(sharp(raw, { raw: info }), `${info.width}x${info.height}`, info.width, info.height),
  );
  return Promise.all(jobs);
}

async function independent(data) {
  const jobs = SIZES.flatMap((size) =>
    encodeBoth(
      sharp(data).autoOrient().resize(size, size, { fit: "cover", position: "centre" }),
      `${size}x${size}`,
      size,
      size,
    ),
  );
  return Promise.all(jobs);
}

async function main() {
  const [file, mode = "derive"] = process.argv.slice(2);
  const runOnce = { derive, independent }[mode];
  if (!file || !runOnce) {
    console.error("usage: node sharp_worker.js IMAGE [derive|independent]");
    process.exit(2);
  }
  const info = {
    impl: "sharp",
    mode,
    sharp: sharp.versions.sharp,
    libvips: sharp.versions.vips,
    threads: sharp.concurrency(),
    node: process.version,
  };
  console.log(JSON.stringify({ ready: { ...info, rss_kb: vmRssKb() } }));
  let first = true;
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    const command = line.trim();
    if (command === "quit") break;
    if (command !== "run") throw new Error(`worker: unknown command ${JSON.stringify(command)}`);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const outputs = await runOnce(fs.readFileSync(file));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const cpu = process.cpuUsage(cpu0);
    const answer = { ms, cpu_ms: (cpu.user + cpu.system) / 1000 };
    if (first) {
      answer.outputs = outputs.map(([name, format, width, height, b]) => ({
        name, format, width, height, bytes: b.length,
      }));
      first = false;
    }
    console.log(JSON.stringify(answer));
  }
  // VmHWM, not resourceUsage().maxRSS: exec folds the spawning parent's high-water mark into
  // the latter (see peak_rss_kb in worker_protocol.py).
  const hwm = /VmHWM:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  console.log(JSON.stringify({ maxrss_kb: hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS }));
  rl.close();
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
