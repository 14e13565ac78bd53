"""Read and write catalog images (store/catalog.h's layout), so tests can
hand stashfs the catalogs a hostile publisher would."""
import hashlib
import struct
import subprocess

HEADER = struct.Struct("<8sII" + "Q" * 11 + "q" + "QQQQ" + "QQ")
HEADER_V1 = struct.Struct("<8sII" + "Q" * 11 + "q" + "QQQQ")
XATTR = struct.Struct("<IIQQII")
ENTRY = struct.Struct("<IIIIQqIIIIQQII")
REF = struct.Struct("<QII")
CHUNK = struct.Struct("<32sIIQII")
FIELDS = ("magic version header_size n_entries n_refs n_chunks n_packs strings_len "
          "off_entries off_refs off_chunks off_packs off_strings total_size created_ns "
          "total_bytes n_files n_reads off_reads n_xattrs off_xattrs").split()
ENTRY_FIELDS = ("parent mode uid gid size mtime_sec mtime_nsec nlink ino name_len name_off "
                "first count flags").split()


def parse(raw):
    if struct.unpack_from("<I", raw, 8)[0] == 1:
        h = dict(zip(FIELDS, HEADER_V1.unpack_from(raw, 0) + (0, 0)))
    else:
        h = dict(zip(FIELDS, HEADER.unpack_from(raw, 0)))

    def rows(st, off, n, names=None):
        out = [st.unpack_from(raw, off + i * st.size) for i in range(n)]
        return [dict(zip(names, r)) for r in out] if names else [list(r) for r in out]
    return {
        "header": h,
        "entries": rows(ENTRY, h["off_entries"], h["n_entries"], ENTRY_FIELDS),
        "refs": rows(REF, h["off_refs"], h["n_refs"]),
        "chunks": rows(CHUNK, h["off_chunks"], h["n_chunks"]),
        "packs": [raw[h["off_packs"] + 32 * i:h["off_packs"] + 32 * (i + 1)]
                  for i in range(h["n_packs"])],
        "reads": list(struct.unpack_from(f"<{h['n_reads']}I", raw, h["off_reads"])),
        "xattrs": rows(XATTR, h["off_xattrs"], h["n_xattrs"]),
        "strings": raw[h["off_strings"]:h["off_strings"] + h["strings_len"]],
    }


def build(c):
    """The image of c (as parse returns it), sections laid out as catalog_build does."""
    h = dict(c["header"])
    h["n_entries"], h["n_refs"], h["n_chunks"] = len(c["entries"]), len(c["refs"]), len(c["chunks"])
    h["n_packs"], h["n_reads"], h["strings_len"] = len(c["packs"]), len(c["reads"]), len(c["strings"])
    h["n_xattrs"] = len(c.get("xattrs", []))
    h["version"], h["header_size"] = 2, HEADER.size
    body = bytearray()
    off = HEADER.size

    def place(key, data):
        nonlocal off
        h[key] = off
        body.extend(data)
        pad = (-len(data)) % 8
        body.extend(b"\0" * pad)
        off += len(data) + pad
    place("off_entries", b"".join(ENTRY.pack(*(e[k] for k in ENTRY_FIELDS)) for e in c["entries"]))
    place("off_refs", b"".join(REF.pack(*r) for r in c["refs"]))
    place("off_chunks", b"".join(CHUNK.pack(*x) for x in c["chunks"]))
    place("off_packs", b"".join(c["packs"]))
    place("off_reads", struct.pack(f"<{len(c['reads'])}I", *c["reads"]))
    place("off_xattrs", b"".join(XATTR.pack(*x) for x in c.get("xattrs", [])))
    h["off_strings"] = off
    body.extend(c["strings"])
    body.extend(b"\0" * ((-len(c["strings"])) % 8))
    h["total_size"] = HEADER.size + len(body)
    return HEADER.pack(*(h[k] for k in FIELDS)) + bytes(body)


def publish(remote_dir, key_file, raw):
    """Put image raw on a file:// remote as a catalog and point the key record
    key_file (a path under keys/) at it; its hex id."""
    hexid = hashlib.sha256(raw).hexdigest()
    # the frame must say its size: zstd writes it when it knows the input's
    z = subprocess.run(["zstd", "-q", "-c", "-3", f"--stream-size={len(raw)}"], input=raw,
                       capture_output=True, check=True).stdout
    (remote_dir / "catalogs" / hexid).write_bytes(z)
    lines = key_file.read_text().splitlines()
    f = lines[1].split(" ", 4)
    f[1] = hexid
    key_file.write_text(lines[0] + "\n" + " ".join(f) + "\n")
    return hexid


def saved(store, remote_dir):
    """The parsed catalog of the one key saved to file:// remote_dir, and
    that key's record file (for publish)."""
    (key_file,) = (remote_dir / "keys").iterdir()
    hexid = key_file.read_text().split()[3]
    with open(f"{store}/catalogs/{hexid}", "rb") as f:
        return parse(f.read()), key_file
