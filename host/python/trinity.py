"""trinity.py: Python access to libtrinity through ctypes (standard library only).

    import trinity
    model = trinity.Model("model.gguf")                 # or "synthetic:tiny"; device="cpu", n_threads=2, ...
    session = model.session(temperature=0.0)            # its own KV cache; n_ctx, top_k, top_p, repeat_penalty, seed
    print(session.generate("Once upon a time", 64))     # the prompt fed (with BOS), then up to 64 new tokens
    session.generate(" and then", 16, on_piece=print)   # more, each piece passed on as it is generated
    ids = model.tokenize("hello")                       # token ids (with BOS)

The library is found through $TRINITY_LIB (a path to libtrinity.so), else the system's loader path. Errors raise
trinity.Error with the engine's one-line message.
"""
import ctypes
import ctypes.util
import os

_DEVICES = {"auto": 0, "cpu": 1, "cuda": 2}
_WEIGHTS = {"auto": 0, "resident": 1, "streaming": 2, "mapped": 3}


class Error(RuntimeError):
    """A failed call: the engine's status name and its message."""


class _ModelParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("device", ctypes.c_int), ("n_threads", ctypes.c_int),
                ("weights", ctypes.c_int), ("resident_layers", ctypes.c_int), ("f32_activations", ctypes.c_int),
                ("kernels", ctypes.c_char_p)]


class _SessionParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("n_ctx", ctypes.c_int), ("temperature", ctypes.c_float),
                ("top_k", ctypes.c_int), ("top_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float),
                ("seed", ctypes.c_uint64)]


_PIECE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_int,
                             ctypes.c_void_p)


def _load():
    path = os.environ.get("TRINITY_LIB") or ctypes.util.find_library("trinity") or "libtrinity.so"
    lib = ctypes.CDLL(path)
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    sigs = {
        "trinity_version": (S, []), "trinity_last_error": (S, []), "trinity_status_name": (S, [I]),
        "trinity_model_params_default": (_ModelParams, []),
        "trinity_model_open": (I, [S, ctypes.POINTER(_ModelParams), ctypes.POINTER(P)]),
        "trinity_model_free": (None, [P]), "trinity_model_name": (S, [P]), "trinity_model_n_vocab": (I, [P]),
        "trinity_tokenize": (I, [P, S, ctypes.c_size_t, I, ctypes.POINTER(I), I, ctypes.POINTER(I)]),
        "trinity_session_params_default": (_SessionParams, []),
        "trinity_session_new": (I, [P, ctypes.POINTER(_SessionParams), ctypes.POINTER(P)]),
        "trinity_session_free": (None, [P]), "trinity_session_device": (S, [P]),
        "trinity_session_n_past": (I, [P]), "trinity_session_reset": (None, [P]),
        "trinity_session_feed_text": (I, [P, S, I]),
        "trinity_session_generate": (I, [P, I, _PIECE_FN, P, ctypes.POINTER(I)]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = _load()


def _check(status):
    if status != 0:
        raise Error("%s: %s" % (_lib.trinity_status_name(status).decode(), _lib.trinity_last_error().decode()))


def version():
    return _lib.trinity_version().decode()


class Model:
    """A GGUF model (or "synthetic:NAME"), opened once and shared by its sessions."""

    def __init__(self, path, device="auto", n_threads=0, weights="auto", f32_activations=False, kernels=None):
        params = _lib.trinity_model_params_default()
        params.device, params.n_threads = _DEVICES[device], n_threads
        params.weights, params.f32_activations = _WEIGHTS[weights], int(f32_activations)
        params.kernels = kernels.encode() if kernels else None
        self._handle = ctypes.c_void_p()
        _check(_lib.trinity_model_open(os.fsencode(path), ctypes.byref(params), ctypes.byref(self._handle)))

    @property
    def name(self):
        return _lib.trinity_model_name(self._handle).decode(errors="replace")

    @property
    def n_vocab(self):
        return _lib.trinity_model_n_vocab(self._handle)

    def tokenize(self, text, add_bos=True):
        data = text.encode()
        n = ctypes.c_int(0)
        capacity = len(data) + 2
        ids = (ctypes.c_int * capacity)()
        _check(_lib.trinity_tokenize(self._handle, data, len(data), int(add_bos), ids, capacity, ctypes.byref(n)))
        return list(ids[:n.value])

    def session(self, **params):
        return Session(self, **params)

    def close(self):
        if self._handle:
            _lib.trinity_model_free(self._handle)
            self._handle = ctypes.c_void_p()

    __del__ = close


class Session:
    """A KV cache and a sampler over a Model: feed text, generate text."""

    def __init__(self, model, n_ctx=0, temperature=0.8, top_k=40, top_p=0.95, repeat_penalty=1.0, seed=0):
        params = _lib.trinity_session_params_default()
        params.n_ctx, params.temperature, params.top_k = n_ctx, temperature, top_k
        params.top_p, params.repeat_penalty, params.seed = top_p, repeat_penalty, seed
        self.model = model  # keeps the model alive as long as the session
        self._handle = ctypes.c_void_p()
        _check(_lib.trinity_session_new(model._handle, ctypes.byref(params), ctypes.byref(self._handle)))

    @property
    def device(self):
        return _lib.trinity_session_device(self._handle).decode()

    @property
    def n_past(self):
        return _lib.trinity_session_n_past(self._handle)

    def reset(self):
        _lib.trinity_session_reset(self._handle)

    def generate(self, prompt, n_predict, add_bos=True, on_piece=None):
        """Feeds prompt (with BOS at the start of the session), then generates up to n_predict new tokens (fewer at
        EOS) and returns their text. on_piece(text), when given, receives each piece as it is generated (whole UTF-8
        characters) and may return True to stop."""
        _check(_lib.trinity_session_feed_text(self._handle, prompt.encode(), int(add_bos)))
        pieces = []

        def collect(data, length, token, user):
            piece = ctypes.string_at(data, length)
            pieces.append(piece)
            return 1 if on_piece and on_piece(piece.decode(errors="replace")) else 0

        n = ctypes.c_int(0)
        _check(_lib.trinity_session_generate(self._handle, n_predict, _PIECE_FN(collect), None, ctypes.byref(n)))
        return b"".join(pieces).decode(errors="replace")

    def close(self):
        if self._handle:
            _lib.trinity_session_free(self._handle)
            self._handle = ctypes.c_void_p()

    __del__ = close
