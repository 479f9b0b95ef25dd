"""test_python.py: the ctypes binding (host/python/trinity.py) over a built libtrinity.so.

    python3 tests/test_python.py LIBTRINITY.so [STORIES260K.gguf]

Generates text from the synthetic model and, where given, greedy text from stories260K (which must equal
llama.cpp's, tests/golden/text/empty.txt); checks that bad input raises trinity.Error with the engine's message.
Prints "test_python: N passed, M failed"."""
import os
import sys

os.environ["TRINITY_LIB"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "python"))
import trinity  # noqa: E402

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, detail))


model = trinity.Model("synthetic:tiny", device="cpu")
check("open synthetic:tiny", model.n_vocab == 1024 and model.name == "synthetic-tiny", (model.n_vocab, model.name))
ids = model.tokenize("hello world")
check("tokenize", len(ids) >= 2 and ids[0] == 1, ids)
session = model.session(temperature=0.0)
seen = []
text = session.generate("hello", 12, on_piece=seen.append)
check("generate 12 tokens", len(text) > 0 and session.n_past == len(model.tokenize("hello")) + 11,
      (text, session.n_past))
check("pieces streamed", "".join(seen) == text, (seen, text))
again = model.session(temperature=0.0).generate("hello", 12)
check("greedy text is deterministic", again == text, (again, text))
stopped = model.session(temperature=0.0)
first = []
stopped.generate("hello", 12, on_piece=lambda p: first.append(p) or True)
check("on_piece returning True stops", len(first) == 1, first)
try:
    model.session(n_ctx=4).generate("hello", 100)
    check("past the context raises", False, "no exception")
except trinity.Error as e:
    check("past the context raises", "context" in str(e), str(e))
try:
    trinity.Model("/nonexistent/model.gguf")
    check("a missing file raises", False, "no exception")
except trinity.Error as e:
    check("a missing file raises", "/nonexistent/model.gguf" in str(e), str(e))

if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
    # tests/golden/text/empty: llama.cpp's greedy text from BOS alone, context 512
    golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "text", "empty")
    with open(golden + ".ids") as f:
        n = len([line for line in f if line.startswith("generated:")][0].split()[1:])
    with open(golden + ".txt", encoding="utf-8") as f:
        want = f.read().rstrip("\n")
    stories = trinity.Model(sys.argv[2], device="cpu")
    out = stories.session(n_ctx=512, temperature=0.0).generate("", n)
    check("stories260K greedy text = llama.cpp's (%d tokens)" % n, out == want, (out[:80], want[:80]))
else:
    print("SKIPPED stories260K: not found")

print("test_python: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
