#!/usr/bin/env node
// Calling semcache from Node.js: the semcache.v1.SemanticCache service of the router, with
// @grpc/grpc-js and the .proto loaded at run time by @grpc/proto-loader (no code generation).
//
//   npm ci                     # once, in this directory
//   node semcache-example.js   # against a running mesh (`make run` in the repository root)
//
// Environment:
//   SEMCACHE_ADDRESS  host:port of the router (default 127.0.0.1:50051)
//   SEMCACHE_TOKEN    API token, sent as `authorization: Bearer <token>` (when the router has
//                     tokens on; the token then decides the tenant)
//   SEMCACHE_TENANT   tenant (default "node-example"; with a token and no tenant, the token's)
//
// What it shows, one JSON line per step on stdout:
//   (a) look-aside:   Lookup (miss) -> your own LLM call -> Store -> Lookup of a paraphrase (hit)
//   (b) read-through: Complete (miss: the mesh calls its LLM and stores) -> Complete of a
//                     paraphrase (hit)
//   (c) the token as metadata, (d) a deadline on every call, (e) status codes: a bad request is
//   INVALID_ARGUMENT; UNAVAILABLE / DEADLINE_EXCEEDED mean "no cache for this call: call your
//   LLM yourself" (see cachedOrLlm below).
// Exit status 0 only when both paraphrases were semantic hits after a miss and the bad request
// was rejected with INVALID_ARGUMENT.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ADDRESS = process.env.SEMCACHE_ADDRESS || '127.0.0.1:50051';
const TOKEN = process.env.SEMCACHE_TOKEN || '';
// With a token the router knows the tenant; naming another one is PERMISSION_DENIED.
const TENANT = process.env.SEMCACHE_TENANT || (TOKEN ? '' : 'node-example');
const DEADLINE_MS = 5000;

// Pairs the MiniLM embedder scores far above the hit threshold (tests/test_mesh.py).
const LOOKASIDE = ['How do I renew my passport?', 'How can I renew my passport?'];
const READTHROUGH = ['How do I reset my router?', 'How can I reset my router?'];

// --- the client ---------------------------------------------------------------------------

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const definition = protoLoader.loadSync(path.join(PROTOS, 'semcache', 'v1', 'cache.proto'), {
  keepCase: true, // field names as in the .proto: entry_id, not entryId
  longs: String, // int64/uint64 as strings (no precision loss)
  enums: String, // enum values by name: "CACHE_STATUS_HIT"
  defaults: true, // unset fields present with their zero value
  oneofs: true, // a virtual field names the set member of a oneof
  includeDirs: [PROTOS],
});
const semcache = grpc.loadPackageDefinition(definition).semcache.v1;

// One channel for the process; plaintext here (grpc.credentials.createSsl(ca) for TLS).
const cache = new semcache.SemanticCache(ADDRESS, grpc.credentials.createInsecure());

// Every call carries the token (when there is one) and its own deadline: a cache that is slow
// must never hold a request longer than it is worth to you.
function call(method, request) {
  const metadata = new grpc.Metadata();
  if (TOKEN) metadata.set('authorization', `Bearer ${TOKEN}`);
  const options = { deadline: Date.now() + DEADLINE_MS };
  return new Promise((resolve, reject) => {
    cache[method](request, metadata, options, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

// The scope decides which earlier answers may be reused: tenant, model, system prompt,
// generation parameters and earlier turns. Equal scopes share answers; nothing else does.
const scope = { tenant: TENANT, model: 'gpt-example' };

// Stand-in for your own LLM client (OpenAI, Anthropic, a local model, ...).
async function callMyLlm(prompt) {
  return `fake LLM answer to: ${prompt}`;
}

// Status codes that mean "the cache is not there for this call": do not fail your request,
// answer it without the cache. INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED are bugs
// or configuration to fix, not something to retry.
const CACHE_UNAVAILABLE = new Set([
  grpc.status.UNAVAILABLE, // nothing listens, the router restarts, a shard is gone
  grpc.status.DEADLINE_EXCEEDED, // slower than our deadline
  grpc.status.RESOURCE_EXHAUSTED, // the router's admission limit
]);

// The look-aside pattern as you would write it in a backend: Lookup, on a miss (or with no
// cache) call the LLM, then Store without letting a failed Store fail the request.
async function cachedOrLlm(prompt) {
  let found;
  try {
    found = await call('Lookup', { scope, prompt });
  } catch (err) {
    if (!CACHE_UNAVAILABLE.has(err.code)) throw err;
    return { text: await callMyLlm(prompt), from: 'llm', cacheError: err };
  }
  if (found.cache.status === 'CACHE_STATUS_HIT') {
    return { text: found.answer.text, from: 'cache', cache: found.cache };
  }
  const text = await callMyLlm(prompt);
  let stored = null;
  try {
    stored = await call('Store', { scope, prompt, answer: { text } });
  } catch (err) {
    if (!CACHE_UNAVAILABLE.has(err.code)) throw err;
  }
  return { text, from: 'llm', cache: found.cache, stored };
}

// --- the demonstration --------------------------------------------------------------------

function report(step, fields) {
  console.log(JSON.stringify({ step, ...fields }));
}

// "CACHE_STATUS_MISS" -> "miss", "MATCH_KIND_SEMANTIC" -> "semantic", unspecified -> null.
function short(name, prefix) {
  if (!name || name.endsWith('_UNSPECIFIED')) return null;
  return name.slice(prefix.length).toLowerCase();
}

function describe(info) {
  return {
    status: short(info.status, 'CACHE_STATUS_'),
    kind: short(info.kind, 'MATCH_KIND_'),
    similarity: info.similarity,
    threshold: info.threshold,
    entry_id: info.entry_id,
    shard: info.shard,
  };
}

function grpcError(err) {
  return { code: err.code, error: grpc.status[err.code], details: err.details };
}

const failures = [];
function expect(condition, message) {
  if (!condition) failures.push(message);
  return condition;
}

function expectMissThenHit(step, first, second) {
  expect(first.status === 'miss', `${step}: the first prompt was not a miss (${first.status})`);
  expect(
    second.status === 'hit' && second.kind === 'semantic',
    `${step}: the paraphrase was not a semantic hit (${second.status}, ${second.kind}, ` +
      `similarity ${second.similarity} vs threshold ${second.threshold})`,
  );
}

async function main() {
  // Start from a clean namespace, so that a second run shows the same miss then hit.
  const reset = await call('Invalidate', { target: 'TARGET_NAMESPACE', scope });
  report('reset', { removed: Number(reset.removed) });

  // (a) Look-aside: this process owns the LLM call.
  const [prompt, paraphrase] = LOOKASIDE;
  const miss = await call('Lookup', { scope, prompt });
  const missInfo = describe(miss.cache);
  report('lookaside.lookup', { prompt, ...missInfo });
  const answer = await callMyLlm(prompt);
  report('lookaside.llm', { prompt, answer });
  const stored = await call('Store', { scope, prompt, answer: { text: answer } });
  report('lookaside.store', { entry_id: stored.entry_id, shard: stored.shard });
  const hit = await call('Lookup', { scope, prompt: paraphrase });
  const hitInfo = describe(hit.cache);
  report('lookaside.lookup_paraphrase', {
    prompt: paraphrase,
    ...hitInfo,
    matched_prompt: hit.cache.matched_prompt,
    answer: hit.answer.text,
  });
  expectMissThenHit('look-aside', missInfo, hitInfo);
  expect(hit.answer.text === answer, 'look-aside: the hit did not return the stored answer');
  // The same flow as one function, the way a backend would call it.
  const served = await cachedOrLlm(paraphrase);
  report('lookaside.helper', { prompt: paraphrase, from: served.from });
  expect(served.from === 'cache', 'look-aside: cachedOrLlm did not answer from the cache');

  // (b) Read-through: the mesh calls its configured LLM on a miss and stores the answer.
  // In production, on a CACHE_UNAVAILABLE code from Complete, call your LLM yourself, unless
  // the error carries trailing metadata `semcache-error: upstream`
  // (err.metadata.get('semcache-error')): then it was the LLM behind the mesh that failed
  // (its HTTP status in `semcache-upstream-status`), and calling it again is a retry.
  const [question, rephrased] = READTHROUGH;
  const first = await call('Complete', { scope, prompt: question });
  const firstInfo = describe(first.cache);
  report('readthrough.complete', { prompt: question, ...firstInfo, answer: first.answer.text });
  const second = await call('Complete', { scope, prompt: rephrased });
  const secondInfo = describe(second.cache);
  report('readthrough.complete_paraphrase', {
    prompt: rephrased,
    ...secondInfo,
    matched_prompt: second.cache.matched_prompt,
    answer: second.answer.text,
  });
  expectMissThenHit('read-through', firstInfo, secondInfo);

  // (e) A request that is the caller's fault fails with INVALID_ARGUMENT, and the details say
  // what to fix. Do not retry it.
  try {
    await call('Complete', { scope, prompt: '' });
    report('errors.empty_prompt', { status: 'OK' });
    expect(false, 'errors: an empty prompt was accepted');
  } catch (err) {
    report('errors.empty_prompt', { status: grpc.status[err.code], ...grpcError(err) });
    expect(
      err.code === grpc.status.INVALID_ARGUMENT,
      `errors: an empty prompt gave ${grpc.status[err.code]}, not INVALID_ARGUMENT`,
    );
  }
}

main()
  .catch((err) => {
    // A failed call that was not expected: say which code it was and what it means.
    if (typeof err.code === 'number' && grpc.status[err.code] !== undefined) {
      report('error', grpcError(err));
      if (CACHE_UNAVAILABLE.has(err.code)) {
        failures.push(
          `no cache at ${ADDRESS} (${grpc.status[err.code]}): is the mesh running? ` +
            '(`make run`; in production, call your LLM yourself on this code)',
        );
      } else if (err.code === grpc.status.UNAUTHENTICATED) {
        failures.push(`the router refused the token (${err.details}): set SEMCACHE_TOKEN`);
      } else {
        failures.push(`${grpc.status[err.code]}: ${err.details}`);
      }
    } else {
      failures.push(String((err && err.stack) || err));
    }
  })
  .finally(() => {
    cache.close();
    report('done', { ok: failures.length === 0, failures });
    if (failures.length) {
      for (const failure of failures) console.error(`semcache-example: ${failure}`);
      process.exitCode = 1;
    } else {
      console.error(`semcache-example: OK (miss then semantic hit, both ways, at ${ADDRESS})`);
    }
  });
