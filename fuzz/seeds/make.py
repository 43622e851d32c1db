#!/usr/bin/env python3
"""Writes the small seed corpora of the JSON, TOML and summary targets (fuzz/seeds/<target>/).
Run from fuzz/: python3 seeds/make.py. The first byte of a seed picks the decoder (see the
target's match). The wire and bao seeds are a few small inputs kept from a fuzzing run."""
import json, os

def put(target, name, first, body):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(bytes([first]) + (body if isinstance(body, bytes) else body.encode()))

node = "ab" * 32
content = "07" * 32
load = {"leaves": 3, "capacity": 100, "neighbors": 2}
put("state", "registry", 0, json.dumps({"format": 1, "saved_at_ms": 1, "entries": [
    {"node_id": node, "addr": "127.0.0.2:4000", "load": load},
    {"node_id": "cd" * 32, "addr": "[::1]:4001", "load": load}]}, indent=2))
put("state", "hash-cache", 1, json.dumps({"version": 1, "files": [
    {"path": "music/a.mp3", "size": 1000, "mtime_ns": -5, "content_id": content},
    {"path": "b", "size": 0, "mtime_ns": 1700000000000000000, "content_id": "00" * 32}]}))
put("state", "part", 2, json.dumps({"content_id": content, "size": 1 << 20,
    "piece_size": 524288, "verified": [[0, 2], [3, 4]]}))
put("state", "supernodes", 3, json.dumps({"saved_at_ms": 1, "supernodes": [
    {"node_id": node, "addr": "127.0.0.2:4000", "load": load, "stale": False}]}, indent=2))

put("node_input", "config", 0, f'''listen = "127.0.0.5:4000"
list-server = ["{node}@127.0.0.2:4000"]
peer = ["127.0.0.3:4000"]
advertise = "10.0.0.1:4000"
share = "/home/me/Music"
downloads = "/tmp/dl"
state-dir = "/tmp/state"
control = "127.0.0.1:7000"
max-leaves = 200
max-files-per-leaf = 5000
max-connections = 512
''')
put("node_input", "search", 1, json.dumps({"keywords": ["free", "music"], "want": 10}))
put("node_input", "search-default", 1, json.dumps({"keywords": ["a"]}))
put("node_input", "get", 2, json.dumps({"content_id": content, "out": "/tmp/x"}))
put("node_input", "ui-search", 3, json.dumps({"words": "abba  gold\tlive"}))
put("node_input", "ui-get", 4, json.dumps({"content_id": content}))

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
os.makedirs("seeds/summary", exist_ok=True)
open("seeds/summary/empty", "wb").write(b"\x01")
open("seeds/summary/sparse", "wb").write(b"\x01" + varint(5) + varint(1) + varint(300) + varint(70000))
open("seeds/summary/dense", "wb").write(b"\x00" + bytes([0x81, 0, 0xff, 0x10]))
