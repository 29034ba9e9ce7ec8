"""Small datasets made on the fly for the dataset tests and the upload benchmark: images that
decode (noise, so they do not compress away), captions, broken images, archives."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

from PIL import Image


def image_bytes(width: int = 32, height: int = 32, fmt: str = "PNG", seed: int = 0) -> bytes:
    """Random noise: a PNG of it is about as large as its pixels."""
    pixels = os.urandom(width * height * 3) if seed == 0 else bytes((seed * 7 + i) % 256 for i in range(width * height * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, fmt)
    return buffer.getvalue()


def broken_image() -> bytes:
    return image_bytes()[:60]  # a PNG header and no pixels


def write_dataset(folder: Path, count: int, captions: bool = True, size: int = 32) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(count):
        name = f"img{number:04d}.png"
        (folder / name).write_bytes(image_bytes(size, size))
        if captions:
            (folder / f"img{number:04d}.txt").write_text(f"a photo, number {number}")
        names.append(name)
    return names


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, target)
    return buffer.getvalue()


def tar_bytes(entries: dict[str, bytes], compression: str = "gz", symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def upload(client, key: str, files: dict[str, bytes], chunk: int = 1 << 20, headers=None) -> dict:
    """Through the API as a script would: open with the list, PUT each file's chunks; the final state."""
    listed = [{"path": name, "size": len(data)} for name, data in files.items()]
    opened = client.post(f"/api/datasets/{key}/uploads", json={"files": listed}, headers=headers or {})
    assert opened.status_code == 201, opened.get_json()
    state = opened.get_json()
    for item in state["files"]:
        data = files[item["path"]]
        for offset in range(0, max(len(data), 1), chunk):
            answer = client.put(f"/api/datasets/{key}/uploads/{state['id']}/{item['index']}/{offset}",
                                data=data[offset:offset + chunk], headers=headers or {})
            assert answer.status_code == 200, answer.get_json()
    return completed(client, key, state["id"], headers)


def completed(client, key: str, upload_id: str, headers=None, timeout: float = 60) -> dict:
    """The upload's state once every file is checked (images are decoded after their last chunk's answer)."""
    from support.polling import wait_for
    return wait_for(lambda: (state := client.get(f"/api/datasets/{key}/uploads/{upload_id}", headers=headers or {}).get_json())
                    ["complete"] and state, timeout, "the upload's files to be checked")
