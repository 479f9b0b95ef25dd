"""test_server.py: `trinity serve` over HTTP, with the standard library alone (helpers: server_lib.py).

    python3 tests/test_server.py TRINITY MAKE_TEST_MODELS

Starts `trinity serve --synthetic tiny --port 0 --parallel 4 -t 1 -c 1024` (256 positions per slot), reads the port
from its "listening on" line and checks: /health and /v1/models; completions and chat, streamed (the SSE format, the
deltas joined equal to the whole reply) and not; greedy text equal to `trinity generate --temp 0`'s for the same
prompt, and seeded text equal to generate's with the same seed, twice; 8 clients at once (2 requests each, different
prompts, lengths and endpoints) each getting what it gets alone; stop strings (never emitted, not even in part);
max_tokens, a full context and finish_reason; usage counts against `trinity tokenize`; every kind of bad request (an
OpenAI-style error with the right status); a raw SSE stream read by curl. Smaller servers check a client that
disconnects mid-stream or while waiting (its slot is freed, the server answers on), --api-key, bad server flags, the
chat template taken from a model's tokenizer.chat_template (make_test_models' chat_*.gguf), SIGTERM with a stream in
flight and SIGINT (exit 0). Every request has a timeout (TRN_TEST_TIMEOUT, default 60 s); every server is killed at
the end. Prints one line per case and "test_server: N passed, M failed, K skipped"; exits 77 where the build has no
HTTP server."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_lib import (SKIP, TIMEOUT, NoServer, Report, Server, StartFailed, check_servers_ended,  # noqa: E402
                        parse_sse, stream_text)

if len(sys.argv) != 3:
    print("usage: python3 tests/test_server.py TRINITY MAKE_TEST_MODELS", file=sys.stderr)
    sys.exit(2)
TRINITY, MAKE_MODELS = (os.path.abspath(a) for a in sys.argv[1:3])
TINY = ["--synthetic", "tiny"]
report = Report("test_server")
check = report.check


def run(args):
    return subprocess.run([TRINITY] + args, capture_output=True, timeout=TIMEOUT)


def token_count(model, text, bos=True):
    """Tokens of `text` as `trinity tokenize` gives them (with BOS where `bos`)."""
    r = run(["tokenize"] + model + ([] if bos else ["--no-bos"]) + ["--", text])
    if r.returncode != 0:
        raise RuntimeError("trinity tokenize: %s" % r.stderr.decode(errors="replace"))
    return len(r.stdout.split())


def generated_text(model, prompt, n, ctx, sampling=("--temp", "0")):
    """The new text of `trinity generate -p PROMPT -n N` (it prints the prompt first), greedy unless `sampling` says
    otherwise, bytes decoded as the server sends them: each ill-formed sequence as U+FFFD."""
    r = run(["generate"] + model + ["-t", "1", "-c", str(ctx), "-p", prompt, "-n", str(n)] + list(sampling))
    head = prompt.encode()
    if r.returncode != 0 or not r.stdout.startswith(head) or not r.stdout.endswith(b"\n"):
        raise RuntimeError("trinity generate: exit %d: %r %s" % (r.returncode, r.stdout[:200],
                                                                 r.stderr.decode(errors="replace")))
    return r.stdout[len(head):-1].decode("utf-8", "replace")


def one_error_line(stderr):
    """Whether stderr ends with exactly one "error: " line (progress lines may come before it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and lines[-1].startswith("error: ") and sum(ln.startswith("error: ") for ln in lines) == 1


def completion(server, prompt, **params):
    return server.post("/v1/completions", dict(prompt=prompt, **params))


def chat(server, messages, **params):
    return server.post("/v1/chat/completions", dict(messages=messages, **params))


def streamed(server, path, body):
    """(text, last chunk, headers) of a streamed request; raises ValueError where the stream is malformed."""
    status, headers, payload = server.request("POST", path, dict(body, stream=True))
    if status != 200:
        raise ValueError("status %d: %r" % (status, payload[:300]))
    if not headers.get("content-type", "").startswith("text/event-stream"):
        raise ValueError("Content-Type %r" % headers.get("content-type"))
    text, last = stream_text(payload, "chat" in path)
    return text, last, headers


def is_error(obj, message_has=()):
    try:
        e = obj["error"]
        return (isinstance(e["message"], str) and e["message"] and e["type"] == "invalid_request_error" and
                all(s in e["message"] for s in message_has))
    except (KeyError, TypeError):
        return False


def usage_ok(obj, prompt_tokens=None):
    u = obj.get("usage", {})
    return (u.get("total_tokens") == u.get("prompt_tokens", -1) + u.get("completion_tokens", -1) and
            (prompt_tokens is None or u.get("prompt_tokens") == prompt_tokens))


def chatml(messages):
    """The prompt the server renders in ChatML (the synthetic model has no template): one text piece after BOS."""
    text = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in messages)
    return text + "<|im_start|>assistant\n"


# ---- the main server ------------------------------------------------------------------------------------------

try:
    main = Server(TRINITY, TINY + ["--port", "0", "--parallel", "4", "-t", "1", "-c", "1024"])
except NoServer as e:
    print("SKIPPED test_server: %s" % e)
    sys.exit(SKIP)
except StartFailed as e:
    check("trinity serve starts", False, e)
    report.finish()
CTX = main.positions
C, CHAT = "/v1/completions", "/v1/chat/completions"


# ---- the server's own description, /health, /v1/models ------------------------------------------------------


def section_basics():
    check("listening line: 4 slots of 1024 / 4 positions", main.slots == 4 and CTX == 256, main.stderr())
    check("stderr says chatml is used for a model without a template",
          "chatml" in main.stderr() and "no tokenizer.chat_template" in main.stderr(), main.stderr())

    h = main.health()
    check("/health: ok, 4 slots idle", h == {"status": "ok", "slots_idle": 4, "slots_busy": 0, "requests_queued": 0}, h)
    status, _, payload = main.request("GET", "/v1/models")
    models = json.loads(payload) if status == 200 else None
    check("/v1/models: the one model", models and models["object"] == "list" and len(models["data"]) == 1 and
          models["data"][0]["id"] == "synthetic-tiny" and models["data"][0]["object"] == "model", payload)


# ---- greedy completions against trinity generate, streamed and not ----------------------------------------------


def section_greedy():
    for prompt, n in [("Once upon a time", 24), ("hello world", 40), ("The quick brown fox jumps", 17)]:
        status, obj, payload = completion(main, prompt, max_tokens=n, temperature=0)
        if not check("completion %r: 200 and a text_completion" % prompt,
                     status == 200 and obj and obj["object"] == "text_completion" and obj["id"].startswith("cmpl") and
                     isinstance(obj["created"], int) and obj["model"] == "synthetic-tiny", payload):
            continue
        choice, usage = obj["choices"][0], obj["usage"]
        want = generated_text(TINY, prompt, n, CTX)
        check("completion %r (temperature 0, %d tokens) = trinity generate --temp 0 -n %d" % (prompt, n, n),
              choice["text"] == want, (choice["text"], want))
        check("completion %r: usage (prompt tokens = trinity tokenize's)" % prompt,
              usage_ok(obj, token_count(TINY, prompt)), usage)
        check("completion %r: finish_reason length at max_tokens, else stop (EOS)" % prompt,
              (choice["finish_reason"] == "length" and usage["completion_tokens"] == n) or
              (choice["finish_reason"] == "stop" and usage["completion_tokens"] < n), (choice, usage))
        try:
            text, last, _ = streamed(main, "/v1/completions", dict(prompt=prompt, max_tokens=n, temperature=0))
            check("streamed completion %r: SSE chunks joined = the whole reply, usage in the last" % prompt,
                  text == choice["text"] and last["choices"][0]["finish_reason"] == choice["finish_reason"] and
                  last.get("usage") == usage, (text, choice["text"], last))
        except ValueError as e:
            check("streamed completion %r: SSE format" % prompt, False, e)

    status, obj, payload = main.post("/v1/completions", {"prompt": ["hello world"], "max_tokens": 5, "temperature": 0})
    check("prompt as an array of one string", status == 200 and obj["choices"][0]["text"] ==
          generated_text(TINY, "hello world", 5, CTX), payload)


# ---- chat ---------------------------------------------------------------------------------------------------------


def section_chat():
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
    status, obj, payload = chat(main, messages, max_tokens=20, temperature=0)
    if check("chat: 200 and a chat.completion", status == 200 and obj and obj["object"] == "chat.completion" and
             obj["id"].startswith("chatcmpl") and obj["choices"][0]["message"]["role"] == "assistant", payload):
        content = obj["choices"][0]["message"]["content"]
        want = generated_text(TINY, chatml(messages), 20, CTX)
        check("chat greedy = trinity generate of the ChatML prompt", content == want, (content, want))
        check("chat usage: prompt tokens = the ChatML prompt's", usage_ok(obj, token_count(TINY, chatml(messages))),
              obj["usage"])
        try:
            text, last, _ = streamed(main, CHAT, dict(messages=messages, max_tokens=20, temperature=0))
            check("streamed chat: role first, deltas joined = the whole reply", text == content and
                  last["choices"][0]["finish_reason"] == obj["choices"][0]["finish_reason"], (text, content))
        except ValueError as e:
            check("streamed chat: SSE format", False, e)
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello"}]}]
    status, obj2, payload = chat(main, parts, max_tokens=20, temperature=0)
    plain = chat(main, [{"role": "user", "content": "Say hello"}], max_tokens=20, temperature=0)[1]
    check("chat content as text parts = the same text as a string",
          status == 200 and obj2["choices"][0]["message"] == plain["choices"][0]["message"], (payload, plain))


# ---- seeds --------------------------------------------------------------------------------------------------------


def section_seeds():
    seeded = [completion(main, "Once upon a time", max_tokens=32, temperature=0.9, seed=4242)[1] for _ in range(2)]
    check("the same seed twice: the same text", seeded[0]["choices"][0]["text"] == seeded[1]["choices"][0]["text"],
          seeded)
    want = generated_text(TINY, "Once upon a time", 32, CTX, ["--temp", "0.9", "--seed", "4242"])
    check("seeded text = trinity generate --temp 0.9 --seed 4242", seeded[0]["choices"][0]["text"] == want,
          (seeded[0]["choices"][0]["text"], want))
    other = completion(main, "Once upon a time", max_tokens=32, temperature=0.9, seed=4243)[1]
    check("another seed: another text", other["choices"][0]["text"] != seeded[0]["choices"][0]["text"], other)


# ---- clients at once ----------------------------------------------------------------------------------------------


def section_concurrency():
    def request_case(i):
        """Request i of the concurrency check: (path, body); prompts of 2 to about 150 tokens (one read in two chunks of
        the server's 128 prompt tokens per step), 8 to 57 new tokens."""
        prompt = "story %d: " % i + ("abc def ghi " * ((i * 7) % 19) if i != 5 else "ab " * 150)
        body = {"max_tokens": 8 + (i * 13) % 50, "temperature": 0, "stream": i % 2 == 1}
        if i % 3 == 0:
            return "/v1/chat/completions", dict(body, messages=[{"role": "user", "content": prompt}])
        return "/v1/completions", dict(body, prompt=prompt)

    def send_case(i):
        """(text, finish_reason, completion tokens) of request i, or the failure."""
        path, body = request_case(i)
        try:
            if body["stream"]:
                text, last, _ = streamed(main, path, body)
                return text, last["choices"][0]["finish_reason"], last["usage"]["completion_tokens"]
            status, obj, payload = main.post(path, body)
            if status != 200:
                return "status %d: %r" % (status, payload[:200])
            choice = obj["choices"][0]
            return (choice["message"]["content"] if "message" in choice else choice["text"], choice["finish_reason"],
                    obj["usage"]["completion_tokens"])
        except (OSError, ValueError, KeyError) as e:
            return "failed: %r" % e

    N_CLIENTS, PER_CLIENT = 8, 2
    alone = [send_case(i) for i in range(N_CLIENTS * PER_CLIENT)]
    together = [None] * len(alone)

    def client(k):
        for j in range(PER_CLIENT):
            together[k * PER_CLIENT + j] = send_case(k * PER_CLIENT + j)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(N_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * TIMEOUT)
    check("%d requests alone: all complete" % len(alone), all(isinstance(a, tuple) for a in alone), alone)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(alone, together)) if a != b]
    check("%d clients x %d requests at once: each reply complete and equal to the same request alone" %
          (N_CLIENTS, PER_CLIENT), not bad and all(isinstance(t, tuple) for t in together), bad)
    check("after the clients: every slot idle", main.wait_idle(10), main.health())


# ---- stop strings -------------------------------------------------------------------------------------------------


def section_stops():
    base = completion(main, "Once upon a time", max_tokens=60, temperature=0)[1]["choices"][0]["text"]
    if len(base) < 30:
        report.skip("stop strings", "the greedy text is only %d characters" % len(base))
    else:
        stop = base[20:23]
        cut = base[:base.find(stop)]
        status, obj, payload = completion(main, "Once upon a time", max_tokens=60, temperature=0, stop=stop)
        check("stop string %r: the text up to it, finish_reason stop" % stop,
              status == 200 and obj["choices"][0]["text"] == cut and obj["choices"][0]["finish_reason"] == "stop",
              (payload, cut))
        try:
            text, last, _ = streamed(main, "/v1/completions", dict(prompt="Once upon a time", max_tokens=60,
                                                                   temperature=0, stop=[stop]))
            check("streamed stop string: the same text, no part of the stop string sent",
                  text == cut and last["choices"][0]["finish_reason"] == "stop", (text, cut))
        except ValueError as e:
            check("streamed stop string: SSE format", False, e)
        status, obj, _ = completion(main, "Once upon a time", max_tokens=60, temperature=0, stop=["\u2603never", stop])
        check("stop as an array: the first that occurs", obj["choices"][0]["text"] == cut, obj)
        status, obj, _ = completion(main, "Once upon a time", max_tokens=60, temperature=0, stop="\u2603never")
        check("a stop string that never occurs: the whole text", obj["choices"][0]["text"] == base and
              obj["choices"][0]["finish_reason"] == "length", obj)
        status, obj, _ = completion(main, "Once upon a time", max_tokens=60, temperature=0, stop=base[:2])
        check("a stop string at the very start: empty text", obj["choices"][0]["text"] == "" and
              obj["choices"][0]["finish_reason"] == "stop", obj)


# ---- max_tokens, a full context ----------------------------------------------------------------------------------


def section_lengths():
    status, obj, payload = completion(main, "hello world", max_tokens=0)
    check("max_tokens 0: empty text, finish_reason length, 0 completion tokens", status == 200 and
          obj["choices"][0] == {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"} and
          obj["usage"]["completion_tokens"] == 0 and usage_ok(obj), payload)
    status, obj, payload = completion(main, "hello world", temperature=0)
    u = obj["usage"] if status == 200 else {}
    reason = obj["choices"][0]["finish_reason"] if status == 200 else None
    check("no max_tokens: until the slot's %d positions are full (length) or EOS (stop)" % CTX,
          (reason == "length" and u["total_tokens"] == CTX) or (reason == "stop" and u["total_tokens"] < CTX), payload)
    long_prompt = "ab " * 300
    n_long = token_count(TINY, long_prompt)
    status, obj, payload = completion(main, long_prompt, max_tokens=4)
    check("a prompt longer than a slot: 400 naming both sizes (%d tokens, %d positions)" % (n_long, CTX),
          status == 400 and is_error(obj, [str(n_long), str(CTX)]), payload)


# ---- bad requests -------------------------------------------------------------------------------------------------


def section_bad_requests():
    bad_requests = [
        ("malformed JSON", "POST", C, None, b'{"prompt": "hi",', 400),
        ("JSON followed by more", "POST", C, None, b'{"prompt": "hi"} {}', 400),
        ("a body that is not an object", "POST", C, None, b"[1, 2]", 400),
        ("no body", "POST", C, None, b"", 400),
        ("prompt missing", "POST", C, {"max_tokens": 3}, None, 400),
        ("prompt a number", "POST", C, {"prompt": 5}, None, 400),
        ("prompt an array of two strings", "POST", C, {"prompt": ["a", "b"]}, None, 400),
        ("an empty prompt", "POST", C, {"prompt": ""}, None, 400),
        ("a prompt that is not UTF-8", "POST", C, None, b'{"prompt": "a\xff\xfeb"}', 400),
        ("negative max_tokens", "POST", C, {"prompt": "hi", "max_tokens": -1}, None, 400),
        ("max_tokens a string", "POST", C, {"prompt": "hi", "max_tokens": "ten"}, None, 400),
        ("fractional max_tokens", "POST", C, {"prompt": "hi", "max_tokens": 2.5}, None, 400),
        ("negative temperature", "POST", C, {"prompt": "hi", "temperature": -0.5}, None, 400),
        ("top_p above 1", "POST", C, {"prompt": "hi", "top_p": 1.5}, None, 400),
        ("top_k a string", "POST", C, {"prompt": "hi", "top_k": "40"}, None, 400),
        ("repetition_penalty 0", "POST", C, {"prompt": "hi", "repetition_penalty": 0}, None, 400),
        ("seed a string", "POST", C, {"prompt": "hi", "seed": "x"}, None, 400),
        ("five stop strings", "POST", C, {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, None, 400),
        ("stop a number", "POST", C, {"prompt": "hi", "stop": 3}, None, 400),
        ("an empty stop string", "POST", C, {"prompt": "hi", "stop": [""]}, None, 400),
        ("n 2", "POST", C, {"prompt": "hi", "n": 2}, None, 400),
        ("stream a string", "POST", C, {"prompt": "hi", "stream": "yes"}, None, 400),
        ("logprobs", "POST", C, {"prompt": "hi", "logprobs": 2}, None, 400),
        ("messages missing", "POST", CHAT, {"max_tokens": 3}, None, 400),
        ("messages empty", "POST", CHAT, {"messages": []}, None, 400),
        ("messages not an array", "POST", CHAT, {"messages": "hi"}, None, 400),
        ("a message that is not an object", "POST", CHAT, {"messages": ["hi"]}, None, 400),
        ("an unknown role", "POST", CHAT, {"messages": [{"role": "robot", "content": "hi"}]}, None, 400),
        ("a role quoted in the error and cut inside a character", "POST", CHAT,
         {"messages": [{"role": "a" + "\u00e9" * 30, "content": "hi"}]}, None, 400),
        ("a role of ill-formed bytes and a raw newline", "POST", CHAT, None,
         b'{"messages": [{"role": "as\xff\nstant", "content": "hi"}]}', 400),
        ("a prompt holding U+0000 (cJSON would cut it there)", "POST", C, {"prompt": "a\u0000b"}, None, 400),
        ("content a number", "POST", CHAT, {"messages": [{"role": "user", "content": 7}]}, None, 400),
        ("content missing", "POST", CHAT, {"messages": [{"role": "user"}]}, None, 400),
        ("a body over 1 MB", "POST", C, None, json.dumps({"prompt": "x" * (1 << 20)}).encode(), 413),
        ("an unknown path", "GET", "/v1/nothing", None, None, 404),
        ("POST to an unknown path", "POST", "/v2/completions", {"prompt": "hi"}, None, 404),
        ("GET /v1/completions", "GET", C, None, None, 405),
        ("GET /v1/chat/completions", "GET", CHAT, None, None, 405),
        ("POST /health", "POST", "/health", {}, None, 405),
        ("DELETE /v1/models", "DELETE", "/v1/models", None, None, 405),
    ]
    for name, method, path, body, raw, want_status in bad_requests:
        try:
            status, headers, payload = main.request(method, path, body, raw=raw)
            obj = json.loads(payload)
        except (OSError, ValueError) as e:
            check("bad request: %s" % name, False, repr(e))
            continue
        check("bad request: %s -> %d and an OpenAI-style error" % (name, want_status),
              status == want_status and is_error(obj) and headers.get("content-type") == "application/json",
              (status, payload[:300]))
    check("a prompt holding the text \\u0000 (an escaped backslash, not U+0000) is taken",
          completion(main, "a\\u0000b", max_tokens=2)[0] == 200)
    check("after the bad requests: the server answers, every slot idle", main.wait_idle(10) and
          completion(main, "hi", max_tokens=2)[0] == 200, main.health())


# ---- a raw stream through curl ------------------------------------------------------------------------------------


def section_curl():
    curl = shutil.which("curl")
    if not curl:
        report.skip("SSE through curl", "curl is not installed")
    else:
        r = subprocess.run([curl, "-sS", "-N", "--noproxy", "*", "--max-time", str(int(TIMEOUT)),
                            "-H", "Content-Type: application/json",
                            "-d", json.dumps({"prompt": "hello world", "max_tokens": 12, "temperature": 0,
                                              "stream": True}),
                            "http://127.0.0.1:%d/v1/completions" % main.port], capture_output=True, timeout=TIMEOUT + 5)
        try:
            text, _ = stream_text(r.stdout, False)
            ok = (r.stdout.startswith(b"data: {") and r.stdout.endswith(b"data: [DONE]\n\n") and
                  text == generated_text(TINY, "hello world", 12, CTX))
        except ValueError as e:
            ok, text = False, e
        check("SSE through curl: data: lines, [DONE] last, the greedy text", r.returncode == 0 and ok,
              (r.returncode, r.stdout[:300], r.stderr[:300], text))


# ---- bad server flags ---------------------------------------------------------------------------------------------


def section_flags():
    for name, args, want_rc in [("--port 70000", ["--port", "70000"], 2), ("--parallel 0", ["--parallel", "0"], 2),
                                ("the port of the running server", ["--port", str(main.port)], 1),
                                ("-c 3 across 4 slots", ["--port", "0", "-c", "3", "--parallel", "4"], 1),
                                ("--chat-template vicuna", ["--chat-template", "vicuna"], 2)]:
        r = subprocess.run([TRINITY, "serve"] + TINY + ["-t", "1"] + args, capture_output=True, timeout=TIMEOUT)
        err = r.stderr.decode(errors="replace")
        check("bad server flag %s: exit %d, one error line" % (name, want_rc), r.returncode == want_rc and
              one_error_line(err), (r.returncode, err))


# ---- clients that go away -----------------------------------------------------------------------------------------


def section_disconnects():
    # One slot with a long context: greedy text of the synthetic model runs for seconds unless cancelled.
    try:
        long_server = Server(TRINITY, TINY + ["--port", "0", "--parallel", "1", "-t", "1", "-c", "8192"])
    except StartFailed as e:
        long_server = None
        check("a one-slot server with 8192 positions starts", False, e)

    def raw_request(server, body):
        """A socket with a POST /v1/completions of `body` sent."""
        s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        data = json.dumps(body).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data)
        return s

    if long_server:
        s = raw_request(long_server, {"prompt": "Once upon a time", "temperature": 0, "stream": True})
        received = b""
        while b'"text":"' not in received and len(received) < 1 << 20:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
        s.close()
        idle = long_server.wait_idle(10)
        log = long_server.stderr()
        if "finish" in log and "cancelled" not in log:
            report.skip("a client gone mid-stream", "the generation ended before the client went: %s" % log[-300:])
        else:
            check("a client gone mid-stream: its request cancelled, its slot free within 10 s",
                  idle and "cancelled" in log and b'"text":"' in received, (long_server.health(), log[-500:]))
        log = long_server.stderr()
        s = raw_request(long_server, {"prompt": "Once upon a time", "temperature": 0})
        deadline = time.time() + 5  # gone as soon as the request runs (it may end at EOS within a second)
        while time.time() < deadline and (long_server.health() or {}).get("slots_busy") != 1:
            time.sleep(0.01)
        s.close()
        idle = long_server.wait_idle(10)
        after = long_server.stderr()
        if after.count("finish") > log.count("finish") and after.count("cancelled") == log.count("cancelled"):
            report.skip("a client gone while waiting for a whole reply",
                        "the generation ended before the client went: %s" % after[-300:])
        else:
            check("a client gone while waiting for a whole reply: cancelled, slot free within 10 s",
                  idle and after.count("cancelled") == log.count("cancelled") + 1,
                  (long_server.health(), after[-500:]))
        status, obj, payload = completion(long_server, "hello world", max_tokens=8, temperature=0)
        check("after the clients went: the server still answers", status == 200 and obj["choices"][0]["text"] ==
              generated_text(TINY, "hello world", 8, CTX), payload)

        # SIGTERM while a stream is in flight: the server stops at once, exit 0
        outcome = {}

        def stream_in_flight():
            try:
                outcome["reply"] = long_server.request("POST", "/v1/completions",
                                                       {"prompt": "Once upon a time", "temperature": 0, "stream": True})
            except Exception as e:  # noqa: BLE001 (a connection cut short is what the check below reports)
                outcome["reply"] = e

        t = threading.Thread(target=stream_in_flight)
        t.start()
        deadline = time.time() + 10
        while time.time() < deadline and (long_server.health() or {}).get("slots_busy") != 1:
            time.sleep(0.02)
        started = time.time()
        rc = long_server.stop(signal.SIGTERM)
        t.join(TIMEOUT)
        check("SIGTERM with a stream in flight: exit 0 within 10 s", rc == 0 and time.time() - started < 10,
              (rc, time.time() - started, long_server.stderr()[-300:]))
        reply = outcome.get("reply")
        try:
            events = parse_sse(reply[2]) if isinstance(reply, tuple) else []
            ended = (len(events) >= 2 and events[-1] == "[DONE]" and
                     "shutting down" in json.loads(events[-2])["error"]["message"])
        except (ValueError, KeyError, TypeError) as e:
            ended = False
            reply = (reply, e)
        finished = False  # the generation reached EOS before the signal: nothing was in flight any more
        try:
            finished = not ended and events[-1] == "[DONE]" and \
                json.loads(events[-2])["choices"][0]["finish_reason"] is not None
        except (ValueError, KeyError, TypeError, IndexError):
            pass
        if finished:
            report.skip("SIGTERM with a stream in flight", "the generation ended before the signal")
        else:
            check("SIGTERM with a stream in flight: the stream ends with an error event and [DONE]", ended,
                  reply[2][-300:] if isinstance(reply, tuple) and len(reply) == 3 else reply)


# ---- the API key --------------------------------------------------------------------------------------------------


def section_api_key():
    try:
        keyed = Server(TRINITY, TINY + ["--port", "0", "--parallel", "1", "-t", "1", "-c", "256",
                                        "--api-key", "sekrit"])
        status, obj, _ = completion(keyed, "hi", max_tokens=2)
        check("--api-key: no key -> 401 and an error", status == 401 and is_error(obj), obj)
        status, obj, _ = keyed.post(C, {"prompt": "hi", "max_tokens": 2}, headers={"Authorization": "Bearer wrong"})
        check("--api-key: a wrong key -> 401", status == 401 and is_error(obj), obj)
        status, obj, _ = keyed.post(C, {"prompt": "hi", "max_tokens": 2}, headers={"Authorization": "Bearer sekrit"})
        check("--api-key: the key -> 200", status == 200 and obj["object"] == "text_completion", obj)
        status, _, _ = keyed.request("GET", "/v1/models")
        check("--api-key: /v1/models without the key -> 401", status == 401, status)
        check("--api-key: /health needs no key", keyed.health() is not None)
        check("SIGINT: exit 0", keyed.stop(signal.SIGINT) == 0, keyed.stderr()[-300:])
    except StartFailed as e:
        check("a server with --api-key starts", False, e)


# ---- chat templates from the model ----------------------------------------------------------------------------------


def section_chat_templates():
    models_dir = tempfile.mkdtemp(prefix="trinity_serve_models_")
    try:
        r = subprocess.run([MAKE_MODELS, models_dir], capture_output=True, timeout=TIMEOUT)
        if r.returncode != 0:
            check("make_test_models", False, r.stderr)
        else:
            conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
            for fmt in ["llama2", "zephyr", "chatml"]:
                model = ["-m", os.path.join(models_dir, "chat_%s.gguf" % fmt)]
                try:
                    server = Server(TRINITY, model + ["--port", "0", "--parallel", "1", "-t", "1"])
                except StartFailed as e:
                    check("chat_%s.gguf: the server starts" % fmt, False, e)
                    continue
                check("chat_%s.gguf: the template is recognised as %s" % (fmt, fmt),
                      "chat template: %s (from the model" % fmt in server.stderr(), server.stderr())
                status, obj, payload = chat(server, conversation, max_tokens=8, temperature=0)
                if fmt == "llama2":  # BOS, then one text piece
                    text = "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhello world [/INST]"
                    want = token_count(model, text)
                    check("llama2 chat greedy = trinity generate of the rendered prompt", status == 200 and
                          obj["choices"][0]["message"]["content"] == generated_text(model, text, 8, server.positions),
                          payload)
                elif fmt == "zephyr":  # BOS, text, EOS, text, EOS, text
                    want = (token_count(model, "<|system|>\nBe brief.") + 1 +
                            token_count(model, "\n<|user|>\nhello world", bos=False) + 1 +
                            token_count(model, "\n<|assistant|>\n", bos=False))
                else:
                    want = token_count(model, chatml(conversation))
                check("%s chat: prompt tokens = the rendered prompt's (%d)" % (fmt, want),
                      status == 200 and obj["usage"]["prompt_tokens"] == want, payload)
                server.stop()
            unknown = ["-m", os.path.join(models_dir, "chat_unknown.gguf"), "--port", "0", "--parallel", "1", "-t", "1"]
            r = subprocess.run([TRINITY, "serve"] + unknown, capture_output=True, timeout=TIMEOUT)
            err = r.stderr.decode(errors="replace")
            check("an unrecognised template: refused, one line suggesting --chat-template",
                  r.returncode == 1 and one_error_line(err) and "--chat-template" in err, (r.returncode, err))
            try:
                server = Server(TRINITY, unknown + ["--chat-template", "zephyr"])
                check("an unrecognised template with --chat-template zephyr: starts",
                      "chat template: zephyr (--chat-template)" in server.stderr(), server.stderr())
                server.stop()
            except StartFailed as e:
                check("an unrecognised template with --chat-template zephyr: starts", False, e)
    finally:
        shutil.rmtree(models_dir, ignore_errors=True)


# ---- the run: each section on its own, a failure inside one (a server that died, a reply of the wrong shape) is
# reported and the next section runs


for name, section in [(n, f) for n, f in list(globals().items()) if n.startswith("section_")]:
    try:
        section()
    except Exception:  # noqa: BLE001
        check(name[len("section_"):], False, traceback.format_exc(limit=4))
check("SIGTERM: exit 0", main.stop(signal.SIGTERM) == 0, main.stderr()[-300:])
check_servers_ended(report)
report.finish()
