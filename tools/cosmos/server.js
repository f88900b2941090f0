#!/usr/bin/env node
// The Cosmos DB API server the tests run against: @vercel/cosmosdb-server, started like its
// own CLI (`cosmosdb-server -p PORT --host HOST`), with two changes:
//
// - A point read of a missing document answers 404, as Cosmos DB does. The packaged handler
//   dereferences the missing document and answers 500 instead (1.0.1, handler/read-document).
// - Connections are kept alive, so the tests do not pay a TLS handshake per request.
//
// `--port 0` picks a free port; the line "Ready to accept HTTPS connections at HOST:PORT"
// on stdout names it.
"use strict";

const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const partitionHeader = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");

const NOT_FOUND = {
  code: "NotFound",
  message: "Entity with the specified id does not exist in the system.",
};

// Patched before the server module loads: its routing table captures the handlers on load.
const packagedReadDocument = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const header = partitionHeader.default(req);
  if (collection.read() && header !== undefined) {
    let partitionKey;
    try {
      partitionKey = partitionHeader.parsePartitionKey(header, params.docId);
    } catch (err) {
      partitionKey = undefined; // let the packaged handler answer the malformed header
    }
    if (partitionKey !== undefined && !collection.document(params.docId, partitionKey).read()) {
      res.statusCode = 404;
      return NOT_FOUND;
    }
  }
  return packagedReadDocument(account, req, res, params);
};

const { createHttpsServer } = require("@vercel/cosmosdb-server");

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 0 };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (key === "-p" || key === "--port") {
      args.port = parseInt(argv[(i += 1)], 10);
    } else if (key === "--host") {
      args.host = argv[(i += 1)];
    } else {
      throw new Error(`unknown argument ${key}; usage: server.js [--host HOST] [-p PORT]`);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error("--port needs a number from 0 to 65535");
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const server = createHttpsServer({ keepAlive: true }).listen(args.port, args.host, () => {
  const { port } = server.address();
  // eslint-disable-next-line no-console
  console.log(`Ready to accept HTTPS connections at ${args.host}:${port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
