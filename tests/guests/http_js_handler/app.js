// http_js_handler: a JavaScript HTTP handler (the service-worker `fetch` event of StarlingMonkey),
// served by `wasitls serve` over wasi:http/incoming-handler.
//   GET  /              a greeting naming the method and path
//   POST /echo          the request body, streamed back
//   GET  /stream/N      N bytes of the pattern (byte i is i % 251)
//   GET  /client-cert   the client-cert header the host set, or "none"
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

function pattern(offset, size) {
  const chunk = new Uint8Array(size);
  for (let i = 0; i < size; i++) chunk[i] = (offset + i) % 251;
  return chunk;
}

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname === "/") {
    return new Response(`hello from a JS handler: ${request.method} ${url.pathname}\n`, {
      headers: { "content-type": "text/plain" },
    });
  }
  if (url.pathname === "/echo") {
    return new Response(request.body, { headers: { "content-type": "application/octet-stream" } });
  }
  if (url.pathname.startsWith("/stream/")) {
    const size = Number(url.pathname.split("/")[2]);
    const block = pattern(0, 251 * 256);
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent >= size) {
          controller.close();
          return;
        }
        const n = Math.min(block.length, size - sent);
        controller.enqueue(block.slice(0, n)); // a fresh copy: an enqueued chunk is handed over
        sent += n;
      },
    });
    return new Response(body, { headers: { "content-length": String(size) } });
  }
  if (url.pathname === "/client-cert") {
    return new Response(`${request.headers.get("client-cert") ?? "none"}\n`);
  }
  return new Response("not found\n", { status: 404 });
}
