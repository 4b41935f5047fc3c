"""A fast path for the commonest header parse: the dataset ``pydicom.dcmread`` builds, without its per-element cost.

``pydicom.dcmread(buffer, defer_size=..., specific_tags=...)`` walks every element of a file through a
general-purpose generator (tens of microseconds per file beyond the elements it keeps). For a Part 10
file with a preamble, an explicit VR little endian file meta group and an uncompressed little endian
dataset (implicit or explicit VR) without undefined lengths, :func:`parse_header` walks the same bytes
with ``struct`` and builds the same :class:`pydicom.dataset.FileDataset` from the same
:class:`~pydicom.dataelem.RawDataElement` tuples (tag, VR, length, value, offset); pydicom still converts
every value. Whenever anything differs from that case (no preamble, another transfer syntax, an unknown
VR, an undefined length, a value cut short, ...) it returns None and the caller uses pydicom itself.
tests/data/test_fast_paths.py checks the result against ``pydicom.dcmread`` on every file of
pydicom's and pydicom-data's test collections. See docs/preprocessing.md.
"""

from __future__ import annotations

import io
import struct

from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

_EXPLICIT_LE, _IMPLICIT_LE = b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2"
#: Explicit VRs pydicom reads, by their two bytes: True when the length takes 4 bytes (after 2 reserved).
_VR_LONG = {vr.value.encode(default_encoding): vr in EXPLICIT_VR_LENGTH_32 for vr in VR if len(vr.value) == 2}
_VR_TEXT = {vr.value.encode(default_encoding): vr.value for vr in VR if len(vr.value) == 2}
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHL")
_LONG_LENGTH = struct.Struct("<L")
_UNDEFINED = 0xFFFFFFFF
_ITEM_DELIMITER = 0xFFFEE00D
_CHARSET = 0x00080005
#: ``RawDataElement(...)`` without the Python-level ``__new__`` of a named tuple (every field given, in order).
_new_raw = tuple.__new__
if RawDataElement._fields != ("tag", "VR", "length", "value", "value_tell", "is_implicit_VR", "is_little_endian",
                              "is_raw", "is_buffered"):  # another pydicom: the named tuple's own constructor
    def _new_raw(cls, values):  # type: ignore[no-redef]
        return cls(*values[:7])


class _Unsupported(Exception):
    """The buffer is not of the case :func:`parse_header` handles: pydicom parses it."""


def _looks_explicit(buffer: bytes, pos: int) -> bool:
    """pydicom's test of the first element of a dataset: its VR bytes are two capital letters."""
    raw = buffer[pos + 4:pos + 6]
    return len(raw) == 2 and 0x40 < raw[0] < 0x5B and 0x40 < raw[1] < 0x5B


def _elements(buffer: bytes, pos: int, implicit: bool, wanted: frozenset[int] | None, defer_size: int | None,
              stop_group: int | None = None) -> tuple[dict[BaseTag, RawDataElement], int]:
    """The raw elements from ``pos`` as pydicom's ``data_element_generator`` yields them, and where it stopped.

    ``wanted``: keep only these tags (and SpecificCharacterSet); ``stop_group``: stop before the
    first element outside that group (the file meta). Raises :class:`_Unsupported` for anything the
    generator would handle in a way this walk does not.
    """
    out: dict[BaseTag, RawDataElement] = {}
    end = len(buffer)
    while pos + 8 <= end:
        if implicit:
            group, elem, length = _IMPLICIT.unpack_from(buffer, pos)
            vr, value_tell = None, pos + 8
        else:
            group, elem, vr_bytes, length = _EXPLICIT.unpack_from(buffer, pos)
            if stop_group is not None and group != stop_group:
                return out, pos  # pydicom rewinds to here, whatever the bytes after the tag
            long = _VR_LONG.get(vr_bytes)
            if long is None:
                raise _Unsupported("unknown VR")
            if long:
                if pos + 12 > end:
                    raise _Unsupported("element header cut short")
                length = _LONG_LENGTH.unpack_from(buffer, pos + 8)[0]
                value_tell = pos + 12
            else:
                value_tell = pos + 8
            vr = _VR_TEXT[vr_bytes]
        if stop_group is not None and group != stop_group:
            return out, pos
        tag = group << 16 | elem
        if tag == _ITEM_DELIMITER:
            return out, pos
        if length == _UNDEFINED:
            raise _Unsupported("undefined length")
        pos = value_tell + length
        if wanted is not None and tag not in wanted and tag != _CHARSET:
            continue
        if defer_size is not None and length > defer_size and tag != _CHARSET:
            value = None
        elif length > 0:
            if pos > end:
                raise _Unsupported("value cut short")
            value = buffer[value_tell:pos]
        else:
            value = empty_value_for_VR(vr, raw=True)
        key = BaseTag(tag)
        out[key] = _new_raw(RawDataElement, (key, vr, length, value, value_tell, implicit, True, True, False))
    return out, pos


_ENCODINGS: dict[tuple, object] = {}


def _encoding(charset: RawDataElement | None) -> str | list[str] | None:
    """The character encoding pydicom derives from a raw SpecificCharacterSet (memoised), None if it fails."""
    if charset is None:
        return default_encoding
    key = (charset.VR, charset.value, charset.is_implicit_VR, config.settings.reading_validation_mode)
    found = _ENCODINGS.get(key)
    if found is None:
        try:
            found = convert_encodings(convert_raw_data_element(charset).value)
        except Exception:
            return None
        if len(_ENCODINGS) > 256:
            _ENCODINGS.clear()
        _ENCODINGS[key] = found
    return found  # type: ignore[return-value]


def parse_header(buffer: bytes, *, specific_tags: frozenset[int], defer_size: int) -> FileDataset | None:
    """``pydicom.dcmread(io.BytesIO(buffer), defer_size=defer_size, specific_tags=specific_tags)``, or None.

    Parameters
    ----------
    buffer : bytes
        A whole file, or its first bytes (elements beyond them are not seen, as pydicom would not).
    specific_tags : frozenset of int
        Tags kept (SpecificCharacterSet always is).
    defer_size : int
        Values longer than this are not read (value None, as pydicom defers them).

    Returns
    -------
    FileDataset or None
        The dataset pydicom builds (its ``buffer`` is a :class:`io.BytesIO` of ``buffer``), or None
        when the file is not the simple case this parser handles.
    """
    if config.settings.reading_validation_mode == config.RAISE:
        return None  # pydicom's strict mode may raise where this walk would not
    try:
        if len(buffer) < 140 or buffer[128:132] != b"DICM" or not _looks_explicit(buffer, 132):
            return None
        meta_raw, pos = _elements(buffer, 132, False, None, None, stop_group=2)
        if not meta_raw or pos + 8 > len(buffer):
            return None
        syntax = meta_raw.get(BaseTag(0x00020010))
        if syntax is None or not isinstance(syntax.value, bytes):
            return None
        uid = syntax.value.rstrip(b"\x00 ")  # as pydicom converts a UI value
        if uid not in (_EXPLICIT_LE, _IMPLICIT_LE) or buffer[pos:pos + 2] == b"\x00\x00":
            return None  # another transfer syntax, or a command set (group 0000)
        implicit = uid == _IMPLICIT_LE
        if _looks_explicit(buffer, pos) == implicit:
            return None  # pydicom would warn and switch the VR encoding
        raw, _ = _elements(buffer, pos, implicit, specific_tags, defer_size)
    except (_Unsupported, struct.error):
        return None
    encoding = _encoding(raw.get(BaseTag(_CHARSET)))
    if encoding is None:
        return None
    file_meta = FileMetaDataset(meta_raw)
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True,
                                    character_encoding=default_encoding)
    ds = FileDataset(io.BytesIO(buffer), raw, buffer[:128], file_meta, implicit, True)
    ds.set_original_encoding(implicit, True, encoding)
    return ds
