"""The server side of the Xet protocol (Xet Protocol Specification 1.x, as hf_xet 1.8 speaks it), so
that stock clients upload to ``zoo serve`` with their defaults and a fine-tune re-uploads only the
chunks its base does not already hold.

- :mod:`.formats`: the byte formats (chunk, xorb and file hashes, xorbs, shards), parsed and checked
  with blake3 and lz4 from PyPI; no zoo imports, so a test or a benchmark can build objects with it.
- :mod:`.cas`: the content-addressed store over the hub's storage (local ``ZOO_HOME`` or S3):
  verified xorbs, the dedupe index, and shards turned into ordinary ``blobs/<sha256>``.
- :mod:`.routes`: the HTTP side: short-lived repo-scoped tokens, the CAS API, and the
  ``X-Xet-Hash`` headers of a download.
"""
