"""Faults and private files: what enters the cache never says more, or takes more space, than it should."""

import os
import stat

import zoo


def test_a_blob_is_never_more_readable_than_its_source(tmp_path, tiny_weights):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(tiny_weights.read_bytes())
    os.chmod(secret, 0o640)
    blob = zoo.fetch(str(secret)).path
    assert stat.S_IMODE(blob.stat().st_mode) == 0o440  # read-only, and still not world-readable
    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"public bytes")
    os.chmod(shared, 0o644)
    assert stat.S_IMODE(zoo.fetch(str(shared)).path.stat().st_mode) == 0o444
