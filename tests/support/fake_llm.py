#!/usr/bin/env python3
"""Tiny fake LLM server (stdlib only) for offline tests of agent CLIs.

Implements just enough of:
  * Anthropic Messages API   POST /v1/messages (stream + non-stream), /v1/messages/count_tokens
  * OpenAI Chat Completions  POST /v1/chat/completions (stream + non-stream), GET /v1/models
  * OpenAI Responses API     POST /v1/responses (SSE) -- used by codex
  * Gemini API               POST /v1beta/models/M:generateContent | :streamGenerateContent | :countTokens
Always answers with a short final text and no tool calls.
If the request body contains the marker SLOWRUN, the stream is dribbled out over ~60 s
(useful to test SIGTERM/SIGINT mid-run).
Added for Gigafactory (the rest is ../shared/agents/fake_llm.py unchanged): the marker
SLOWCUT streams as slowly (in 0.2 s steps, so a client that hangs up is noticed at once)
until a client hangs up on such a stream; from then on this server answers it at once, so
a session interrupted mid-stream and resumed (its history still holds the marker) finishes.
Every request is appended to a JSONL log (method, path, headers, body excerpt).
"""
import argparse, json, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "FAKE_OK: hello from the fake model."
CUT = threading.Event()  # a SLOWCUT stream was interrupted by its client
IN_TOK, OUT_TOK = 100, 12
LOCK = threading.Lock()
TOOL_CMD = "echo TOOL_RAN >> tool_ran.txt"
# preferred shell tool per API family -> argument builder
SHELL_TOOLS = {"Bash": lambda c: {"command": c, "description": "fake tool call"},
               "run_shell_command": lambda c: {"command": c, "description": "fake tool call"},
               "bash": lambda c: {"command": c, "description": "fake tool call"},
               "exec_command": lambda c: {"cmd": c},
               "shell": lambda c: {"command": ["bash", "-lc", c]}}


def tool_names(body):
    names = []
    for t in (body.get("tools") or []):
        if not isinstance(t, dict):
            continue
        if "name" in t:
            names.append(t["name"])
        if isinstance(t.get("function"), dict):
            names.append(t["function"].get("name"))
        for fd in t.get("functionDeclarations") or []:
            names.append(fd.get("name"))
    return names


def want_tool(raw, body, done_marker):
    """Return (name, args) if the fake should answer with a shell tool call."""
    loop = b"TOOLLOOP" in raw
    once = (b"TOOLONCE" in raw or b"TOOLSLEEP" in raw) and not any(m in raw for m in done_marker)
    if not (loop or once):
        return None
    cmd = "python3 -c \"import time; time.sleep(120)\" && " + TOOL_CMD if b"TOOLSLEEP" in raw else TOOL_CMD
    for n in tool_names(body):
        if n in SHELL_TOOLS:
            return n, SHELL_TOOLS[n](cmd)
    return None


def fill(schema):
    """Minimal instance of a JSON schema (for structured-output side requests)."""
    if not isinstance(schema, dict):
        return "ok"
    t = str(schema.get("type", "object")).lower()
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        props = schema.get("properties") or {}
        return {k: fill(v) for k, v in props.items()}
    if t == "array":
        return []
    if t in ("integer", "number"):
        return 1
    if t == "boolean":
        return False
    return "ok"
ARGS = None


def log(entry):
    with LOCK:
        with open(ARGS.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # silence stderr access log
        pass

    # ---------- helpers ----------
    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return raw, json.loads(raw or b"{}")
        except Exception:
            return raw, {}

    def _json(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, data, event=None):
        s = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"
        self.wfile.write(s.encode())
        self.wfile.flush()

    def _chunks(self, slow):
        if not slow:
            return [REPLY]
        if slow == "cut":
            return [f"tick{i} " for i in range(300)] + [REPLY]
        return [f"tick{i} " for i in range(30)] + [REPLY]

    def _pause(self, slow):
        if slow == "cut":
            time.sleep(0.2)
        elif slow:
            time.sleep(2)

    # ---------- routing ----------
    def do_GET(self):
        log({"t": time.time(), "m": "GET", "path": self.path, "headers": dict(self.headers)})
        p = self.path.split("?")[0]
        if p.endswith("/models"):
            return self._json({"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake", "type": "model",
                 "display_name": "fake-model"}]})
        if p.startswith("/v1beta/models"):
            return self._json({"models": [{"name": "models/gemini-2.5-flash"}]})
        self._json({"error": {"type": "not_found", "message": "fake: unknown GET " + p}}, 404)

    def do_HEAD(self):
        log({"t": time.time(), "m": "HEAD", "path": self.path})
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()

    def do_POST(self):
        raw, body = self._body()
        self.raw = raw
        slow = b"SLOWRUN" in raw or ("cut" if b"SLOWCUT" in raw and not CUT.is_set() else False)
        import os
        bdir = ARGS.log + ".bodies"
        os.makedirs(bdir, exist_ok=True)
        with LOCK:
            n = len(os.listdir(bdir))
            open(f"{bdir}/{n:03d}.json", "wb").write(raw)
        log({"t": time.time(), "m": "POST", "path": self.path, "headers": dict(self.headers),
             "stream": body.get("stream") if isinstance(body, dict) else None,
             "model": body.get("model") if isinstance(body, dict) else None,
             "tools": len(body.get("tools") or []) if isinstance(body, dict) else None,
             "body_len": len(raw), "body_head": raw[:600].decode("utf-8", "replace")})
        p = self.path.split("?")[0]
        if b"FAIL401" in raw:
            return self._json({"type": "error", "error": {"type": "authentication_error", "code": 401,
                               "status": "UNAUTHENTICATED", "message": "fake: invalid x-api-key"}}, 401)
        try:
            if p.endswith("/messages/count_tokens"):
                return self._json({"input_tokens": IN_TOK})
            if p.endswith("/messages"):
                return self.anthropic(body, slow)
            if p.endswith("/chat/completions"):
                return self.chat(body, slow)
            if p.endswith("/responses"):
                return self.oai_responses(body, slow)
            if ":countTokens" in p:
                return self._json({"totalTokens": IN_TOK})
            if ":streamGenerateContent" in p or ":generateContent" in p:
                return self.gemini(p, body, slow, stream=":streamGenerateContent" in p)
        except (BrokenPipeError, ConnectionResetError):
            log({"t": time.time(), "event": "client_disconnected", "path": p})
            if slow == "cut":
                CUT.set()
            return
        self._json({"error": {"type": "not_found", "message": "fake: unknown POST " + p}}, 404)

    # ---------- Anthropic ----------
    def anthropic(self, body, slow):
        model = body.get("model", "claude-sonnet-4-5")
        mid = "msg_" + uuid.uuid4().hex[:20]
        usage = {"input_tokens": IN_TOK, "output_tokens": OUT_TOK,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        tool = want_tool(self.raw, body, [b'"tool_result"'])
        if not body.get("stream"):
            content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:16], "name": tool[0],
                        "input": tool[1]}] if tool else [{"type": "text", "text": REPLY}]
            return self._json({"id": mid, "type": "message", "role": "assistant", "model": model,
                               "content": content, "stop_reason": "tool_use" if tool else "end_turn",
                               "stop_sequence": None, "usage": usage})
        self._sse_start()
        self._sse({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}}, "message_start")
        if tool:
            self._sse({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:16], "name": tool[0], "input": {}}},
                "content_block_start")
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(tool[1])}},
                      "content_block_delta")
            self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            self._sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": OUT_TOK}}, "message_delta")
            return self._sse({"type": "message_stop"}, "message_stop")
        self._sse({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}, "content_block_start")
        for c in self._chunks(slow):
            self._pause(slow)
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": c}}, "content_block_delta")
        self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self._sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": OUT_TOK}}, "message_delta")
        self._sse({"type": "message_stop"}, "message_stop")

    # ---------- OpenAI chat completions ----------
    def chat(self, body, slow):
        model = body.get("model", "fake-model")
        cid = "chatcmpl-" + uuid.uuid4().hex[:20]
        now = int(time.time())
        usage = {"prompt_tokens": IN_TOK, "completion_tokens": OUT_TOK, "total_tokens": IN_TOK + OUT_TOK}
        tool = want_tool(self.raw, body, [b'"role":"tool"', b'"role": "tool"'])
        text = REPLY
        if b"AIDEREDIT" in self.raw:  # aider 'whole' edit format: filename line + fenced block
            text = "created.txt\n```\nhello from fake\n```\n"
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            text = json.dumps(fill((rf.get("json_schema") or {}).get("schema")))
        if tool:
            tc = {"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                  "function": {"name": tool[0], "arguments": json.dumps(tool[1])}}
            if not body.get("stream"):
                return self._json({"id": cid, "object": "chat.completion", "created": now, "model": model,
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                                        "tool_calls": [tc]},
                                                "finish_reason": "tool_calls"}], "usage": usage})
            self._sse_start()
            base = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
            self._sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, **tc}]}, "finish_reason": None}]})
            self._sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            self._sse({**base, "choices": [], "usage": usage})
            return self._sse("[DONE]")
        if not body.get("stream"):
            return self._json({"id": cid, "object": "chat.completion", "created": now, "model": model,
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                            "finish_reason": "stop"}], "usage": usage})
        self._sse_start()
        base = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
        self._sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}]})
        for c in (self._chunks(slow) if text == REPLY else [text]):
            self._pause(slow)
            self._sse({**base, "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]})
        self._sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._sse({**base, "choices": [], "usage": usage})
        self._sse("[DONE]")

    # ---------- OpenAI Responses (codex) ----------
    def oai_responses(self, body, slow):
        model = body.get("model", "fake-model")
        rid = "resp_" + uuid.uuid4().hex[:20]
        iid = "msg_" + uuid.uuid4().hex[:20]
        now = int(time.time())
        resp = {"id": rid, "object": "response", "created_at": now, "model": model, "status": "in_progress",
                "output": []}
        item = {"id": iid, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
        tool = want_tool(self.raw, body, [b'"function_call_output"'])
        if tool:
            item = {"id": "fc_" + uuid.uuid4().hex[:16], "type": "function_call", "status": "completed",
                    "call_id": "call_" + uuid.uuid4().hex[:12], "name": tool[0], "arguments": json.dumps(tool[1])}
        usage = {"input_tokens": IN_TOK, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": OUT_TOK, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": IN_TOK + OUT_TOK}
        if not body.get("stream", True):
            return self._json({**resp, "status": "completed", "output": [item], "usage": usage})
        self._sse_start()
        self._sse({"type": "response.created", "response": resp}, "response.created")
        self._sse({"type": "response.output_item.added", "output_index": 0,
                   "item": {**item, "status": "in_progress", **({"arguments": ""} if tool else {"content": []})}},
                  "response.output_item.added")
        for c in ([] if tool else self._chunks(slow)):
            self._pause(slow)
            self._sse({"type": "response.output_text.delta", "item_id": iid, "output_index": 0,
                       "content_index": 0, "delta": c}, "response.output_text.delta")
        self._sse({"type": "response.output_item.done", "output_index": 0, "item": item},
                  "response.output_item.done")
        self._sse({"type": "response.completed",
                   "response": {**resp, "status": "completed", "output": [item], "usage": usage}},
                  "response.completed")

    # ---------- Gemini ----------
    def gemini(self, path, body, slow, stream):
        model = path.split("/models/")[-1].split(":")[0]

        tool = want_tool(self.raw, body, [b'"functionResponse"'])
        gc = body.get("generationConfig") or {}
        if gc.get("responseMimeType") == "application/json":
            stext = json.dumps(fill(gc.get("responseJsonSchema") or gc.get("responseSchema")))
            slow = False
        else:
            stext = None

        def chunk(text, final):
            part = {"functionCall": {"name": tool[0], "args": tool[1]}} if (tool and final) else {"text": text}
            c = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                 "modelVersion": model, "responseId": "fake-" + uuid.uuid4().hex[:8]}
            if final:
                c["candidates"][0]["finishReason"] = "STOP"
                c["usageMetadata"] = {"promptTokenCount": IN_TOK, "candidatesTokenCount": OUT_TOK,
                                      "totalTokenCount": IN_TOK + OUT_TOK}
            return c

        if stext is not None:
            tool = None
        if not stream:
            return self._json(chunk(stext or REPLY, True))
        self._sse_start()
        parts = [stext] if stext else ([""] if tool else self._chunks(slow))
        for i, c in enumerate(parts):
            self._pause(slow)
            self._sse(chunk(c, i == len(parts) - 1))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--log", default="agentcli-work/requests.jsonl")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), H)
    srv.daemon_threads = True
    print(f"fake LLM on 127.0.0.1:{ARGS.port}, log={ARGS.log}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
