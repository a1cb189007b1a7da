"""A minimal reader for 3D NRRD files (https://teem.sourceforge.net/nrrd/format.html).

Only what the registered real-data sources need, plus their obvious siblings: attached data
(``encoding`` raw, gzip or bzip2), scalar ``type`` (signed/unsigned 8-64 bit integers, float,
double), ``endian``, ``dimension: 3``, ``sizes``, ``space`` (any right/left, anterior/posterior,
superior/inferior triple such as ``left-posterior-superior`` or ``RAS``), ``space directions`` and
``space origin``. Anything else that changes how the data must be read (detached ``data file``,
``line skip``/``byte skip``, ASCII or hex encodings, non-spatial axes, ...) raises
:class:`NrrdError` naming the field.

:func:`read_nrrd` returns a nibabel :class:`~nibabel.nifti1.Nifti1Image` whose affine maps voxel
``(i, j, k)`` (NRRD's fastest axis first) to world RAS mm, so :func:`nni_widget.io.load_volume`
gives the canonical ``(z, y, x)`` :class:`~nni_widget.io.Volume`.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["NrrdError", "read_nrrd", "read_labelled_nrrd"]

#: NRRD type names (with the spec's synonyms) -> numpy kind and byte size
_TYPES: dict[str, str] = {}
for _names, _code in (
    (("signed char", "int8", "int8_t"), "i1"),
    (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    (("int", "signed int", "int32", "int32_t"), "i4"),
    (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
      "int64_t"), "i8"),
    (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    (("float",), "f4"),
    (("double",), "f8"),
):  # fmt: skip
    _TYPES.update(dict.fromkeys(_names, _code))

#: world axis letter -> (axis, sign that turns it into RAS+)
_AXES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
#: fields that only describe the data (ignored); anything not listed here or read below is refused
_DESCRIPTIVE = {
    "content", "kinds", "labels", "units", "space units", "measurement frame", "thicknesses",
    "centers", "centerings", "min", "max", "old min", "oldmin", "old max", "oldmax", "sample units",
    "axis mins", "axismins", "axis maxs", "axismaxs", "spacings", "space dimension",
}  # fmt: skip
_READ = {"type", "dimension", "sizes", "endian", "encoding", "space", "space directions", "space origin"}
_SPATIAL_KINDS = {"domain", "space", "???", "none"}


class NrrdError(ValueError):
    """An NRRD file this reader cannot read; the message names the field and what to do."""


def _header(raw: bytes, name: str) -> tuple[dict[str, str], int]:
    """Parse the header of ``raw``: ``(fields, offset of the data)``."""
    if not raw.startswith(b"NRRD000"):
        raise NrrdError(f"{name} is not an NRRD file (no 'NRRD000x' magic line)")
    fields: dict[str, str] = {}
    pos = raw.index(b"\n") + 1
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise NrrdError(f"{name}: the header never ends (no blank line before the data)")
        line = raw[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if not line:
            return fields, pos
        field_at, pair_at = line.find(": "), line.find(":=")
        if line.startswith("#") or (pair_at >= 0 and (field_at < 0 or pair_at < field_at)):
            continue  # a comment or a key/value pair: neither changes how the data is read
        if field_at < 0:
            raise NrrdError(f"{name}: malformed header line {line!r}")
        key, value = line[:field_at], line[field_at + 2 :]
        fields[key.strip().lower()] = value.strip()


def _vector(text: str, name: str, field: str) -> np.ndarray:
    match = re.fullmatch(r"\(([^()]*)\)", text.strip())
    if not match:
        raise NrrdError(f"{name}: {field} entry {text!r} is not a vector like (1,0,0)")
    return np.array([float(v) for v in match.group(1).split(",")], dtype=np.float64)


def _ras_signs(space: str, name: str) -> np.ndarray:
    """Per world axis, the sign that turns the NRRD ``space`` into RAS+ (e.g. LPS -> (-1, -1, 1))."""
    words = space.lower().split("-")
    letters = [w[0].upper() for w in words] if len(words) == 3 else list(space.upper())
    if len(letters) != 3 or any(c not in _AXES for c in letters):
        raise NrrdError(
            f"{name}: unsupported space {space!r}; expected e.g. 'left-posterior-superior' or 'RAS'"
        )
    axes = [_AXES[c] for c in letters]
    if sorted(a for a, _ in axes) != [0, 1, 2]:
        raise NrrdError(f"{name}: space {space!r} names an anatomical axis twice")
    signs = np.ones(3)
    for i, (axis, sign) in enumerate(axes):
        if axis != i:
            raise NrrdError(f"{name}: space {space!r} is not ordered left-right, front-back, up-down")
        signs[i] = sign
    return signs


def read_nrrd(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Read a 3D NRRD file with attached data into a NIfTI image with a world RAS affine.

    Args:
        path: the ``.nrrd`` file.

    Returns:
        A :class:`nibabel.nifti1.Nifti1Image` of the data in NRRD axis order ``(i, j, k)`` (native
        byte order); its affine maps ``(i, j, k, 1)`` to world RAS mm (LPS and other spaces are
        converted by negating the world axes that point the other way).

    Raises:
        NrrdError: (a ValueError) not NRRD, a field this reader does not support, or the data size
            does not match the header.
    """
    path = Path(path)
    name = path.name
    raw = path.read_bytes()
    fields, offset = _header(raw, name)
    unknown = sorted(set(fields) - _READ - _DESCRIPTIVE)
    if unknown:
        raise NrrdError(
            f"{name}: unsupported NRRD field(s) {unknown} (only attached 3D scalar data is read: "
            f"{sorted(_READ)}); convert the file, e.g. to NIfTI, with a full NRRD reader"
        )
    missing = sorted({"type", "dimension", "sizes", "encoding", "space", "space directions"} - set(fields))
    if missing:
        raise NrrdError(f"{name}: required field(s) {missing} missing (an oriented 3D image needs them)")
    if fields["dimension"] != "3":
        raise NrrdError(f"{name}: dimension {fields['dimension']} is not supported; only 3D volumes")
    kinds = fields.get("kinds", "domain domain domain").lower().split()
    if any(k not in _SPATIAL_KINDS for k in kinds):
        raise NrrdError(f"{name}: kinds {fields['kinds']!r} has a non-spatial axis; only scalar 3D images")
    code = _TYPES.get(fields["type"].lower())
    if code is None:
        raise NrrdError(f"{name}: unsupported type {fields['type']!r}; expected one of {sorted(set(_TYPES))}")
    endian = fields.get("endian", "little" if code[1] == "1" else "").lower()
    if endian not in ("little", "big"):
        raise NrrdError(
            f"{name}: endian {endian or '(missing)'!r} must be 'little' or 'big' for type {fields['type']}"
        )
    dtype = np.dtype(("<" if endian == "little" else ">") + code)
    sizes = [int(s) for s in fields["sizes"].split()]
    if len(sizes) != 3 or min(sizes) < 1:
        raise NrrdError(f"{name}: sizes {fields['sizes']!r} must be three positive integers")

    encoding = fields["encoding"].lower()
    body = raw[offset:]
    try:
        if encoding == "raw":
            data = body
        elif encoding in ("gzip", "gz"):
            data = gzip.decompress(body)
        elif encoding in ("bzip2", "bz2"):
            data = bz2.decompress(body)
        else:
            raise NrrdError(
                f"{name}: unsupported encoding {fields['encoding']!r}; expected raw, gzip or bzip2"
            )
    except (OSError, EOFError, zlib.error) as exc:
        raise NrrdError(
            f"{name}: the {encoding} data cannot be decompressed ({exc}); the file is corrupt"
        ) from exc
    expected = int(np.prod(sizes)) * dtype.itemsize
    if len(data) != expected:
        raise NrrdError(
            f"{name}: {len(data)} data bytes, expected {expected} for sizes {sizes} of {fields['type']}"
        )
    array = np.frombuffer(data, dtype).reshape(sizes, order="F").astype(dtype.newbyteorder("="))

    directions = fields["space directions"].split()
    if len(directions) != 3 or any(d.lower() == "none" for d in directions):
        raise NrrdError(f"{name}: space directions {fields['space directions']!r} must give 3 vectors")
    origin_text = fields.get("space origin", "(0,0,0)")
    affine = np.eye(4)
    affine[:3, :3] = np.stack([_vector(d, name, "space directions") for d in directions], axis=1)
    affine[:3, 3] = _vector(origin_text, name, "space origin")
    if affine[:3, :3].shape != (3, 3) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NrrdError(f"{name}: space directions {fields['space directions']!r} are degenerate")
    affine = np.diag([*_ras_signs(fields["space"], name), 1.0]) @ affine
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    return img


def read_labelled_nrrd(
    image: str | os.PathLike[str], labels: str | os.PathLike[str], *, atol: float = 1e-4
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Read an image and its label map, checking that both lie on the same voxel grid.

    Raises:
        NrrdError: either file is unreadable, or the shapes or affines differ (the labels would not
            overlay the image).
    """
    img, lab = read_nrrd(image), read_nrrd(labels)
    if img.shape != lab.shape or not np.allclose(img.affine, lab.affine, atol=atol):
        raise NrrdError(
            f"{Path(labels).name} is not on the grid of {Path(image).name}: shape {lab.shape} vs "
            f"{img.shape}, affine\n{lab.affine}\nvs\n{img.affine}; resample the labels onto the image first"
        )
    if lab.get_data_dtype().kind not in "iu":
        raise NrrdError(f"{Path(labels).name} has type {lab.get_data_dtype()}; a label map must be integer")
    return img, lab
