"""Where a prepared data dir lives: a local dir or a remote location, and how one of its files is addressed and read.

A data location is a local dir, an ``http(s)://`` / ``s3://`` / ``gs://`` URL of a dir, or a ``pipe:`` command
template with ``{}`` where the file's path inside the dir goes (``pipe:aws s3 cp s3://bucket/data/{} -``).
Local paths, ``http(s)`` and ``pipe:`` are opened with webdataset's ``gopen`` (curl for http); other schemes with
fsspec. Checking what was read against the manifest is the reader's job (``stream/shard_io.py``).
"""

from __future__ import annotations

from pathlib import Path


def is_remote(location: str | Path) -> bool:
    text = str(location)
    return "://" in text or text.startswith("pipe:")


def join(location: str | Path, rel: str) -> str:
    """The location of ``rel`` (e.g. ``train/shard-000000.tar``) inside a data location."""
    text = str(location)
    if text.startswith("pipe:"):
        if "{}" not in text:
            raise ValueError(f"a pipe: data location needs '{{}}' where the file path goes, got {text!r}")
        return text.replace("{}", rel)
    if "://" in text:
        return f"{text.rstrip('/')}/{rel}"
    return str(Path(text) / rel)


def read_bytes(url: str) -> bytes:
    """All bytes of a local path or remote URL (raises OSError / the opener's error on failure)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("", "file", "http", "https") or url.startswith("pipe:"):
        import webdataset as wds  # imports torch: kept out of the paths that only read a manifest or a config

        with wds.gopen(url, "rb") as stream:
            return stream.read()
    import fsspec  # s3://, gs://, ...: only imported when such a location is used

    with fsspec.open(url, "rb") as stream:
        return stream.read()
