"""test_server_openai.py: `trinity serve` through the official `openai` Python package (helpers: server_lib.py).

    python3 tests/test_server_openai.py TRINITY

Starts `trinity serve --synthetic tiny --port 0 --parallel 2 -t 1 -c 512 --api-key KEY` and checks, with
openai.OpenAI(base_url="http://127.0.0.1:PORT/v1"): the model list; completions and chat completions, streamed and
not (the streamed pieces joined equal the whole reply, greedy); usage and finish_reason as the package reads them; a
bad request raising openai.BadRequestError and a wrong key openai.AuthenticationError. Exits 77 (skipped, with the
reason) where `import openai` fails or the build has no HTTP server."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_lib import SKIP, TIMEOUT, NoServer, Report, Server, StartFailed, check_servers_ended  # noqa: E402

try:
    import openai
except ImportError as e:
    print("SKIPPED test_server_openai: the openai package is not installed (%s): pip install openai" % e)
    sys.exit(SKIP)

if len(sys.argv) != 2:
    print("usage: python3 tests/test_server_openai.py TRINITY", file=sys.stderr)
    sys.exit(2)
report = Report("test_server_openai")
check = report.check
KEY = "test-key"
try:
    server = Server(os.path.abspath(sys.argv[1]), ["--synthetic", "tiny", "--port", "0", "--parallel", "2", "-t", "1",
                                                   "-c", "512", "--api-key", KEY])
except NoServer as e:
    print("SKIPPED test_server_openai: %s" % e)
    sys.exit(SKIP)
except StartFailed as e:
    check("trinity serve starts", False, e)
    report.finish()


# no proxy from the environment between the client and 127.0.0.1
for name in ("NO_PROXY", "no_proxy"):
    os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"]))


def client(key):
    return openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % server.port, api_key=key, max_retries=0,
                         timeout=TIMEOUT)


api = client(KEY)
models = api.models.list()
check("models.list(): the one model", [m.id for m in models.data] == ["synthetic-tiny"], models)

r = api.completions.create(model="synthetic-tiny", prompt="Once upon a time", max_tokens=24, temperature=0)
text = r.choices[0].text
check("completions.create: text, finish_reason, usage", isinstance(text, str) and len(text) > 0 and
      r.choices[0].finish_reason in ("stop", "length") and
      r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens and r.usage.completion_tokens <= 24, r)
pieces = [c.choices[0].text for c in api.completions.create(model="synthetic-tiny", prompt="Once upon a time",
                                                            max_tokens=24, temperature=0, stream=True)]
check("completions.create(stream=True): the pieces joined = the whole text", "".join(pieces) == text,
      (pieces, text))

messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
r = api.chat.completions.create(model="synthetic-tiny", messages=messages, max_tokens=20, temperature=0, seed=7)
content = r.choices[0].message.content
check("chat.completions.create: the assistant's message", r.choices[0].message.role == "assistant" and
      isinstance(content, str) and r.choices[0].finish_reason in ("stop", "length") and r.usage.prompt_tokens > 0, r)
chunks = list(api.chat.completions.create(model="synthetic-tiny", messages=messages, max_tokens=20, temperature=0,
                                          seed=7, stream=True))
joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("chat.completions.create(stream=True): role first, the deltas joined = the whole message",
      chunks[0].choices[0].delta.role == "assistant" and joined == content and
      chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason, (joined, content))

try:
    api.completions.create(model="synthetic-tiny", prompt="", max_tokens=4)
    check("an empty prompt raises openai.BadRequestError", False, "no exception")
except openai.BadRequestError as e:
    check("an empty prompt raises openai.BadRequestError", e.status_code == 400 and "empty" in str(e), e)
try:
    client("wrong-key").models.list()
    check("a wrong API key raises openai.AuthenticationError", False, "no exception")
except openai.AuthenticationError as e:
    check("a wrong API key raises openai.AuthenticationError", e.status_code == 401, e)

check_servers_ended(report)
report.finish()
