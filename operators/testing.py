"""An in-memory harness: drive one operator without a bus, for unit tests."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from operators.base import Context, Operator
from schemas import Message, ObjectRef, decoder, encoder


class MemoryBlobStore:
    """A BlobStore kept in a temporary directory (files, so large payloads stay off the heap)."""

    def __init__(self, root: Path | None = None, bucket: str = "mem"):
        self.root = Path(root or tempfile.mkdtemp(prefix="pw-blobs-"))
        self.bucket = bucket

    def _path(self, name: str) -> Path:
        return self.root / hashlib.sha1(name.encode()).hexdigest()

    async def put_file(self, name: str, path: Path, content_type: str = "") -> ObjectRef:
        digest = hashlib.sha256()
        with open(path, "rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
        shutil.copyfile(path, self._path(name))
        return ObjectRef(bucket=self.bucket, name=name, size=Path(path).stat().st_size,
                         sha256=digest.hexdigest(), content_type=content_type)

    async def get_file(self, ref: ObjectRef, path: Path) -> Path:
        src = self._path(ref.name)
        if not src.exists():
            raise FileNotFoundError(f"no object {ref.name!r} in bucket {ref.bucket!r}")
        shutil.copyfile(src, path)
        return Path(path)

    async def delete(self, ref: ObjectRef) -> None:
        self._path(ref.name).unlink(missing_ok=True)


async def drive(op: Operator, msg: Message, ctx: Context | None = None) -> list[Message]:
    """Run process() on one message and collect what it yields; exceptions propagate."""
    if ctx is None:
        ctx = Context(operator=op.name, job_id=getattr(msg, "job_id", ""),
                      blobs=MemoryBlobStore(), scratch=Path(tempfile.mkdtemp(prefix="pw-")))
    wire = encoder()
    # Each output goes through the wire encoding, as the runner would send it.
    return [decoder(type(out)).decode(wire.encode(out)) async for out in op.process(msg, ctx)]
