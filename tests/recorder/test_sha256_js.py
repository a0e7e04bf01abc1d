"""recorder/static/sha256.js, the recorder's incremental SHA-256, run by Node against known vectors and
against hashlib on random data fed in random pieces, its state saved to JSON and restored between pieces."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "recorder" / "static" / "sha256.js"
NODE = shutil.which("node")

if NODE is None:
    if os.environ.get("CI"):
        raise RuntimeError("no node on PATH: the recorder's JavaScript tests need Node.js")
    pytest.skip("no node on PATH: install Node.js to test the recorder's SHA-256", allow_module_level=True)

# Reads cases from stdin, [{"pieces": [hex, ...], "restore_after": [piece index, ...]}], prints the digests.
SCRIPT = """
import {{ Sha256 }} from {module};
import {{ readFileSync }} from "node:fs";
const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map(({{ pieces, restore_after }}) => {{
  let hash = new Sha256();
  pieces.forEach((hex, i) => {{
    hash.update(Uint8Array.from(Buffer.from(hex, "hex")));
    if (restore_after.includes(i)) hash = Sha256.restore(JSON.parse(JSON.stringify(hash.save())));
  }});
  const first = hash.hex();
  if (hash.hex() !== first) throw new Error("hex() changed the state");
  return first;
}});
process.stdout.write(JSON.stringify(out));
"""


def js_digests(cases: Sequence[Mapping[str, object]], tmp_path: Path) -> list[str]:
    script = tmp_path / "run.mjs"
    script.write_text(SCRIPT.format(module=json.dumps(MODULE.as_uri())))
    assert NODE is not None
    done = subprocess.run([NODE, str(script)], input=json.dumps(cases), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    digests: list[str] = json.loads(done.stdout)
    return digests


def test_the_fips_vectors(tmp_path: Path) -> None:
    vectors = {
        b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": (
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
        b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    }
    cases = [{"pieces": [data.hex()], "restore_after": []} for data in vectors]
    assert js_digests(cases, tmp_path) == list(vectors.values())


def test_random_data_in_random_pieces_with_the_state_saved_and_restored(tmp_path: Path) -> None:
    rng = np.random.default_rng(20261206)
    cases, expected = [], []
    # Lengths around the block (64) and padding (55, 56) boundaries, and larger files.
    for length in [1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 4096, 100_003, 1_048_577]:
        data = rng.bytes(length)
        cuts = sorted(set(rng.integers(0, length + 1, size=int(rng.integers(0, 12))).tolist()))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
        restore = rng.choice(len(pieces), size=min(3, len(pieces)), replace=False).tolist()
        cases.append({"pieces": [p.hex() for p in pieces], "restore_after": restore})
        expected.append(hashlib.sha256(data).hexdigest())
    assert js_digests(cases, tmp_path) == expected


def test_a_state_that_is_not_a_saved_one_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "bad.mjs"
    script.write_text(
        f"import {{ Sha256 }} from {json.dumps(MODULE.as_uri())};\n"
        "for (const bad of [null, {h: [1], tail: [], length: 0}, {h: [0,0,0,0,0,0,0,0], tail: new Array(64).fill(0), "
        "length: 64}]) {\n"
        "  try { Sha256.restore(bad); console.log('accepted'); } catch (e) { console.log(e.name); }\n}\n"
    )
    assert NODE is not None
    done = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["TypeError"] * 3, done.stderr
