// A loopback proxy that adds an agent's capability token to every request,
// for clients that send none (the conformance suite). Everything else goes
// through unchanged, `Host` and `Origin` included, so the server still judges
// them; the answer comes back as it is, streamed.
//
//   PROXY_CONFIG=<file> node proxy.mjs
//
// prints `listening on http://127.0.0.1:<port>` and serves until it is
// killed. <file> holds `{"upstream": "http://127.0.0.1:<port>", "token":
// "..."}` and is read at each request, so the proxy can start before the
// server (whose allowed origins then name the proxy's); until it exists the
// proxy answers 503. The token is never printed.
import { readFileSync } from "node:fs";
import http from "node:http";

const configPath = process.env.PROXY_CONFIG;
if (!configPath) {
  console.error("set PROXY_CONFIG to the file that names the upstream and the token");
  process.exit(2);
}

function config() {
  try {
    const { upstream, token } = JSON.parse(readFileSync(configPath, "utf8"));
    return upstream && token ? { upstream: new URL(upstream), token } : null;
  } catch {
    return null;
  }
}

const server = http.createServer((req, res) => {
  const target = config();
  if (!target) {
    res.writeHead(503, { "content-type": "text/plain" }).end("the proxy has no upstream yet\n");
    return;
  }
  const headers = { ...req.headers, authorization: `Bearer ${target.token}` };
  const upstream = http.request(
    {
      host: target.upstream.hostname,
      port: target.upstream.port,
      method: req.method,
      path: req.url,
      headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(res);
    },
  );
  upstream.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`the upstream did not answer: ${e.code ?? e.message}\n`);
  });
  req.on("aborted", () => upstream.destroy());
  req.pipe(upstream);
});

server.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
