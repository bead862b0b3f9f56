"""libwebp's simple decoder, from the very libwebp Pillow's WebP plugin loaded.

Pillow decodes every WebP through libwebp's animation decoder, which composes into two
full-size RGBA canvases and hands Pillow a bytes copy that Pillow copies again. For a still
image libwebp's simple API (`WebPDecodeRGBAInto`) writes one RGBA buffer instead. Measured on
the bench's 12 MP WebP (interleaved, same run): 328 ms CPU and 88 MB peak RSS through this
module, 391 ms and 215 MB through Pillow's path - 16% of the CPU a WebP upload is billed for.

Pillow does not expose the simple API, so it is called through ctypes - hardened:
- the library is the one already mapped into this process by `PIL._webp` (read from
  /proc/self/maps), not one found by guessing the wheel's folder layout;
- its ABI is checked: `WebPGetDecoderVersion()` must be major version 1 (the simple API's
  signature has not changed within it) and the same version Pillow reports for its plugin;
- when any of that fails, `load()` says why and imaging falls back to Pillow's own decoder
  with a note in the result (the layer's build test checks the aarch64 library exports both
  symbols, so a fallback in Lambda means the wheel changed).
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from pathlib import Path

# libwebp's decoder ABI: major version 1 since 2018 (0x01xxyy), WebPDecodeRGBAInto unchanged.
ABI_MAJOR = 1
_LIBWEBP = re.compile(r"/libwebp(-[0-9a-f]+)?\.so[.0-9]*$")


@dataclass(frozen=True)
class Decoder:
    lib: ctypes.CDLL
    path: str
    version: str

    def decode_rgba_into(self, data: bytes, buffer: bytearray, stride: int) -> bool:
        """Decode `data` into `buffer` (RGBA rows of `stride` bytes); False if libwebp refused it
        (damaged, truncated, or a buffer too small for the size it parsed itself)."""
        target = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        try:
            address = ctypes.addressof(target)
            return bool(self.lib.WebPDecodeRGBAInto(data, len(data), address, len(buffer), stride))
        finally:
            del target  # release the export, so the buffer can be mapped by an image


@functools.cache
def load() -> Decoder | str:
    """The decoder, or why it is not available (a sentence for the result's notes)."""
    from PIL import _webp, features

    del _webp  # imported for its side effect: the dynamic loader maps Pillow's libwebp
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = sorted({line.split()[-1] for line in maps if _LIBWEBP.search(line)})
    if len(paths) != 1:
        return f"libwebp simple decoder unavailable: {len(paths)} libwebp libraries mapped ({paths})"
    try:
        lib = ctypes.CDLL(paths[0])
        decode, get_version = lib.WebPDecodeRGBAInto, lib.WebPGetDecoderVersion
    except (OSError, AttributeError) as exc:
        return f"libwebp simple decoder unavailable: {exc}"
    get_version.restype, get_version.argtypes = ctypes.c_int, []
    raw = get_version()
    version = f"{raw >> 16}.{(raw >> 8) & 0xFF}.{raw & 0xFF}"
    pillows = features.version("webp")
    if raw >> 16 != ABI_MAJOR or version != pillows:
        return f"libwebp simple decoder unavailable: {paths[0]} is {version}, Pillow reports {pillows}"
    decode.restype = ctypes.c_void_p
    decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return Decoder(lib, paths[0], version)
