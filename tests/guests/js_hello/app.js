// js_hello: a JavaScript guest built with `jco componentize` (StarlingMonkey).
// Usage: js-hello [read FILE] [exit CODE] ... ; prints its arguments, environment and the file.
import { getArguments, getEnvironment, initialCwd } from "wasi:cli/environment@0.2.9";
import { exit } from "wasi:cli/exit@0.2.9";
import { getStdout } from "wasi:cli/stdout@0.2.9";
import { getStderr } from "wasi:cli/stderr@0.2.9";
import { getDirectories } from "wasi:filesystem/preopens@0.2.9";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function write(stream, text) {
  stream.blockingWriteAndFlush(encoder.encode(text));
}

function readFile(path) {
  // path is "<preopen>/<relative path>"
  for (const [dir, name] of getDirectories()) {
    const prefix = name.endsWith("/") ? name : name + "/";
    if (path.startsWith(prefix)) {
      const file = dir.openAt({}, path.slice(prefix.length), {}, { read: true });
      const chunks = [];
      let offset = 0n;
      for (;;) {
        const [data, eof] = file.read(65536n, offset);
        chunks.push(decoder.decode(data, { stream: true }));
        offset += BigInt(data.length);
        if (eof) break;
      }
      return chunks.join("") + decoder.decode();
    }
  }
  throw new Error(`no preopen holds ${path}`);
}

async function main() {
  const out = getStdout();
  const err = getStderr();
  const args = getArguments();
  write(out, `argc: ${args.length}\n`);
  args.slice(1).forEach((arg, i) => write(out, `arg ${i + 1}: ${JSON.stringify(arg)}\n`));
  const env = getEnvironment().slice().sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [key, value] of env) write(out, `env ${key}=${JSON.stringify(value)}\n`);
  write(out, `initial-cwd: ${JSON.stringify(initialCwd() ?? null)}\n`);
  write(out, `preopens: ${JSON.stringify(getDirectories().map(([, name]) => name).sort())}\n`);
  console.log("console.log reaches stdout");
  // StarlingMonkey's own imports (WASI 0.2.10/0.2.12): random, clocks
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  write(out, `crypto.getRandomValues: ${bytes.length} bytes, not all zero: ${bytes.some((b) => b !== 0)}\n`);
  const r = Math.random();
  write(out, `Math.random in [0, 1): ${r >= 0 && r < 1}\n`);
  write(out, `Date.now plausible: ${Date.now() > 1577836800000 && Date.now() < 4102444800000}\n`);
  const t0 = performance.now();
  write(out, `performance.now non-decreasing: ${performance.now() >= t0}\n`);
  write(err, "to stderr\n");
  console.error("console.error reaches stderr");
  for (let i = 1; i < args.length; i++) {
    if (args[i] === "read") {
      const path = args[++i];
      try {
        write(out, `read ${path}: ${JSON.stringify(readFile(path))}\n`);
      } catch (e) {
        write(out, `read ${path}: error ${e.payload ?? e.message}\n`);
      }
    } else if (args[i] === "exit") {
      const code = Number(args[++i]);
      write(out, `exiting with ${code === 0 ? "ok" : "err"}\n`);
      exit(code === 0 ? { tag: "ok" } : { tag: "err" });
    } else if (args[i] === "write") {
      const path = args[++i];
      const [dir, name] = getDirectories()[0];
      const file = dir.openAt({}, path, { create: true, truncate: true }, { write: true });
      const stream = file.writeViaStream(0n);
      stream.blockingWriteAndFlush(encoder.encode(`written by js_hello to ${name}/${path}\n`));
      write(out, `wrote ${name}/${path}\n`);
    } else if (args[i] === "timers") {
      // StarlingMonkey's event loop: timers over wasi:io/poll and the monotonic clock
      const t0 = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 50));
      let ticks = 0;
      await new Promise((resolve) => {
        const id = setInterval(() => {
          if (++ticks === 3) {
            clearInterval(id);
            resolve();
          }
        }, 10);
      });
      write(out, `timers: 50 ms timeout then 3 interval ticks, >= 80 ms: ${performance.now() - t0 >= 80}\n`);
      const digest = await crypto.subtle.digest("SHA-256", encoder.encode("abc"));
      const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
      write(out, `sha256("abc"): ${hex}\n`);
    } else if (args[i] === "throw") {
      throw new Error("js_hello throws on purpose");
    }
  }
}

export const run = {
  async run() {
    await main();
  },
};
