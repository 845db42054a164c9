// http_js_fetch: `fetch` from a JavaScript guest (StarlingMonkey, over wasi:http).
// Usage: http-js-fetch COMMAND URL [ARG] ...
//   get URL             GET, print status, a few headers, body length and whether the body follows the
//                       test pattern (byte i is i % 251), read as a stream
//   post URL SIZE       POST SIZE bytes of the pattern as a streamed body; print the server's reply
//   text URL            GET and print the body as text
//   head URL            HEAD, print status and content-length
//   parallel URL N      N fetches of URL at once (Promise.all), then their statuses and body sizes
//   json URL            GET, parse the body as JSON, print its keys
import { getArguments } from "wasi:cli/environment@0.2.9";
import { getStdout } from "wasi:cli/stdout@0.2.9";

const encoder = new TextEncoder();
function say(text) {
  const out = getStdout(); // not at top level: the module is initialized while the component is built
  const bytes = encoder.encode(text + "\n");
  for (let i = 0; i < bytes.length; i += 4096) out.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
}

function pattern(offset, size) {
  const chunk = new Uint8Array(size);
  for (let i = 0; i < size; i++) chunk[i] = (offset + i) % 251;
  return chunk;
}

async function readCounting(response) {
  const reader = response.body.getReader();
  let total = 0;
  let ok = true;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    // sample the pattern: checking every byte costs seconds in an interpreter
    for (let j = 0; j < value.length; j += 509) if (value[j] !== (total + j) % 251) ok = false;
    if (value.length && value[value.length - 1] !== (total + value.length - 1) % 251) ok = false;
    total += value.length;
  }
  return { total, ok };
}

function headersLine(response) {
  const names = ["content-type", "x-test"];
  return names.map((n) => `${n}=${JSON.stringify(response.headers.get(n))}`).join(" ");
}

async function command(cmd, url, arg) {
  if (cmd === "get") {
    const r = await fetch(url);
    const { total, ok } = await readCounting(r);
    say(`get ${r.status} redirected=${r.redirected} url=${r.url} ${headersLine(r)} body=${total} pattern=${ok}`);
  } else if (cmd === "text") {
    const r = await fetch(url);
    say(`text ${r.status} ${JSON.stringify(await r.text())}`);
  } else if (cmd === "head") {
    const r = await fetch(url, { method: "HEAD" });
    say(`head ${r.status} content-length=${r.headers.get("content-length")}`);
  } else if (cmd === "post") {
    const size = Number(arg);
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent >= size) {
          controller.close();
          return;
        }
        const n = Math.min(65536, size - sent);
        controller.enqueue(pattern(sent, n));
        sent += n;
      },
    });
    const r = await fetch(url, { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
    say(`post ${r.status} ${(await r.text()).trim()}`);
  } else if (cmd === "parallel") {
    const n = Number(arg);
    const bodies = await Promise.all(
      Array.from({ length: n }, () => fetch(url).then(async (r) => [r.status, (await r.arrayBuffer()).byteLength])),
    );
    say(`parallel ${bodies.map(([s, len]) => `${s}:${len}`).join(" ")}`);
  } else if (cmd === "json") {
    const r = await fetch(url, { headers: { accept: "application/json", "x-test": "js" } });
    say(`json ${r.status} ${Object.keys(await r.json()).sort().join(",")}`);
  } else if (cmd === "post-bytes") {
    const size = Number(arg);
    const r = await fetch(url, { method: "POST", body: pattern(0, size), headers: { "x-test": "bytes" } });
    say(`post-bytes ${r.status} ${(await r.text()).trim()}`);
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

async function main() {
  const args = getArguments().slice(1);
  for (let i = 0; i < args.length; ) {
    const cmd = args[i++];
    const url = args[i++];
    const arg = ["post", "post-bytes", "parallel"].includes(cmd) ? args[i++] : undefined;
    try {
      await command(cmd, url, arg);
    } catch (e) {
      say(`${cmd} error ${e.name}: ${e.message}`);
    }
  }
}

export const run = {
  async run() {
    await main();
  },
};
