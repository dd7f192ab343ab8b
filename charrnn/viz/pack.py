"""Arrays into one compact text blob for the page: quantised activations and raw numbers, packed
end to end, deflated and base64-encoded; the page unpacks them with DecompressionStream.

A quantised array holds codes 0, 1, 2, ... standing for lo + code * STEP, so a value is off by at
most STEP / 2, the same for a gate in [0, 1] (11 codes) and a state in [-1, 1] (21 codes).
"""
import base64
import zlib

import numpy as np

STEP = 1 / 10  # a colour scale of 21 shades (11 for a gate): finer steps cost page size

DTYPES = {"uint8": "Uint8Array", "uint16": "Uint16Array", "float32": "Float32Array"}
"""The dtypes a blob holds, by their JavaScript typed array (little-endian, as the page reads)."""


def quantise(values, lo, hi):
    """values in [lo, hi] -> uint8 codes (values outside are clipped)."""
    codes = np.rint((np.asarray(values, dtype=np.float64) - lo) / STEP)
    return np.clip(codes, 0, round((hi - lo) / STEP)).astype(np.uint8)


def pack(arrays):
    """{name: array} -> (index, blob): index maps each name to [typed array, byte offset,
    length]; blob is the base64 text of the deflated bytes, each array 8-byte aligned so the
    page can view it in place."""
    index, parts, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, dtype=np.dtype(a.dtype).newbyteorder("<"))
        data = a.tobytes()
        index[name] = [DTYPES[a.dtype.name], offset, int(a.size)]
        pad = -len(data) % 8
        parts += [data, b"\0" * pad]
        offset += len(data) + pad
    return index, base64.b64encode(zlib.compress(b"".join(parts), 9)).decode("ascii")
