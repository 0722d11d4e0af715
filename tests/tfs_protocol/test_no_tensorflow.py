"""The protocol package and the logic tier's codecs import and work with TensorFlow absent.

The logic tier's image has no TensorFlow (GUIDE: keep it slim); a stray `import tensorflow`
in the shared protocol package would break that image only at deploy time. A child
interpreter blocks the import outright, so the test fails the day one sneaks in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"tensorflow", "tensorflow_serving", "keras", "google"}:
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import tfs_protocol
    from tfs_protocol import json_codec
    from logic_service.graph.codecs import decode_predict_response, encode_predict_request

    body = encode_predict_request("s", {"text": np.array(["a", b"\\xff"], dtype=object)})
    assert b'"a"' in body and b'"b64"' in body, body
    out = decode_predict_response(b'{"outputs": [NaN, Infinity, -Infinity]}', None)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == -np.inf, out
    fmt, arrays = json_codec.decode_predict_request({"inputs": [1, 2]}, {"n": "DT_UINT64"})
    assert arrays["n"].dtype == np.uint64
    assert not [m for m in sys.modules if m.startswith("tensorflow")]
    print("ok")
    """
)


def test_protocol_and_logic_codecs_need_no_tensorflow() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
