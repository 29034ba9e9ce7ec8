"""Issue 27, point 1: every file a run or a page reads is checked where it is listed and opened,
not only when its config was validated: a symlinked file inside an allowed folder, a hard link to
an outside file, a concept list of any name, and a folder swapped for a symlink after the check."""
from __future__ import annotations

import json
import os
import threading

from PIL import Image

from webapp.config import confined, paths
from webapp.config.builtin.train_settings import ConceptSpec
from webapp.config.checks import validate
from webapp.trainer.builtin import concepts
from webapp.trainer.builtin.images import Augment, load_pixels


def image(path, colour=(10, 90, 160)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), colour).save(path)
    return path


def dataset(tmp_path):
    """A read root with one concept folder, and an outside folder holding a 'secret' image."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    image(root / "cat" / "a.png")
    image(outside / "secret.png", (250, 0, 0))
    (outside / "secret.txt").write_text("the outside caption")
    return root, outside, (os.path.realpath(root),)


def listed(folder, roots, log=None):
    found = concepts.find_items([ConceptSpec(path=str(folder))], 64, log or (lambda *a, **k: None), roots=roots)
    return [str(item.image_path) for item in found]


def test_a_symlinked_file_in_an_allowed_folder_is_neither_listed_nor_opened(tmp_path):
    root, outside, roots = dataset(tmp_path)
    (root / "cat" / "b.png").symlink_to(outside / "secret.png")
    (root / "cat" / "a.txt").symlink_to(outside / "secret.txt")  # a caption through a link too
    logged = []
    items = concepts.find_items([ConceptSpec(path=str(root / "cat"))], 64,
                                lambda text, level="info", **_: logged.append(text), roots=roots)
    assert [item.image_path.name for item in items] == []  # a.png's caption is a link: skipped, named
    assert any("b.png" in line and "symbolic link" in line for line in logged)
    assert not any("outside caption" in caption for item in items for caption in item.captions)
    for opener in (lambda: confined.read_bytes(root / "cat" / "b.png", roots),
                   lambda: load_pixels(root / "cat" / "b.png", (64, 64), Augment(), roots)):
        try:
            opener()
            raise AssertionError("a symlinked file was read")
        except confined.Refused as exc:
            assert "symbolic link" in str(exc) and "outside" not in str(exc).replace("may read", "")


def test_a_hard_link_to_an_outside_file_is_refused(tmp_path):
    root, outside, roots = dataset(tmp_path)
    os.link(outside / "secret.png", root / "cat" / "b.png")
    logged = []
    names = [os.path.basename(p) for p in listed(root / "cat", roots, lambda text, *a, **k: logged.append(text))]
    assert names == ["a.png"]
    assert any("b.png" in line and "hard link" in line for line in logged)


def test_an_outside_folder_is_refused_where_it_is_opened(tmp_path):
    root, outside, roots = dataset(tmp_path)
    (root / "dogs").symlink_to(outside, target_is_directory=True)
    for folder in (outside, root / "dogs"):
        try:
            listed(folder, roots)
            raise AssertionError("an outside folder was listed")
        except confined.Refused:
            pass


def test_a_folder_swapped_for_a_symlink_after_the_check_is_never_read(tmp_path):
    """The worker checked ``root/cat``; a thread swaps it for a link to the outside folder and back
    as fast as it can while the trainer lists it, 50 times: never one outside file."""
    root, outside, roots = dataset(tmp_path)
    folder, aside, link = root / "cat", root / "cat-aside", root / "cat-link"
    link.symlink_to(outside, target_is_directory=True)
    stop, swaps = threading.Event(), [0]

    def swap():
        while not stop.is_set():
            os.rename(folder, aside)
            os.rename(link, folder)      # now a link to the outside folder
            os.rename(folder, link)
            os.rename(aside, folder)     # the real folder again
            swaps[0] += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes = []
    try:
        for _ in range(50):
            logged = []
            try:
                found = listed(folder, roots, lambda text, *a, **k: logged.append(text))
                outcomes.append("listed")
            except (confined.Refused, FileNotFoundError, NotADirectoryError):
                found = []
                outcomes.append("refused")
            assert not any("secret" in name for name in found + logged), (found, logged)
    finally:
        stop.set()
        swapper.join()
    assert swaps[0] > 0 and len(outcomes) == 50


def test_a_concept_list_of_any_name_is_inlined_and_checked(tmp_path):
    root, outside, roots = dataset(tmp_path)
    (root / "list.txt").write_text(json.dumps([{"path": str(outside)}]))
    report = validate({"concept_file_name": str(root / "list.txt")}, tmp_path, roots=roots)
    assert any(error["field"] == "concepts[0].path" and error["message"] == paths.OUTSIDE_READ
               for error in report.errors), report.errors
    inside = validate({"concept_file_name": str(root / "list.txt")}, tmp_path, roots=roots)
    assert inside.packed["concepts"][0]["path"] == str(outside)  # inlined, whatever the file's name
    (root / "good.lst").write_text(json.dumps([{"path": str(root / "cat")}]))
    good = validate({"concept_file_name": str(root / "good.lst")}, tmp_path, roots=roots)
    assert good.packed["concepts"][0]["path"] == str(root / "cat")
    assert not [e for e in good.errors if e["field"].startswith("concepts")]


def test_a_symlinked_file_is_not_served_as_a_thumbnail(client, workspace, config_dir, tmp_path):
    cat = workspace / "cat"
    image(cat / "a.png")
    secret = image(tmp_path / "outside" / "secret.png", (250, 0, 0))
    (cat / "0.png").symlink_to(secret)                      # sorts first: it would be thumbnail 0
    (config_dir / "t.json").write_text(json.dumps({"concepts": [{"path": str(cat)}]}))
    served = [client.get(f"/configs/t/concepts/0/thumbnails/{n}") for n in range(4)]
    assert [response.status_code for response in served] == [200, 404, 404, 404]
    assert all(response.data != secret.read_bytes() for response in served)
    assert served[0].data == (cat / "a.png").read_bytes()
