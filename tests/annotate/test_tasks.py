"""A folder of images -> Label Studio tasks, with the overlap min_raters needs."""

from __future__ import annotations

import json

import pytest

from hae_data.annotate.__main__ import main
from hae_data.annotate.labeling import labeling_config
from hae_data.annotate.tasks import (
    TaskFileError,
    find_images,
    make_tasks,
    project_settings,
    read_keep_list,
)


@pytest.fixture
def images(tmp_path):
    base = tmp_path / "data" / "HB" / "images"
    for rel in ("b.jpg", "a dir/c d.png", "a dir/notes.txt", ".hidden/x.jpg", "Z.JPEG"):
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded here")
    return base


def test_find_images_walks_sorted_and_skips_hidden_and_non_images(images):
    assert find_images(images) == ["Z.JPEG", "a dir/c d.png", "b.jpg"]


def test_local_file_tasks_are_relative_to_the_document_root(images, tmp_path):
    tasks = make_tasks(find_images(images), images, document_root=tmp_path / "data")
    assert tasks[1] == {
        "data": {
            "image": "/data/local-files/?d=HB/images/a%20dir/c%20d.png",
            "hb_image": "a dir/c d.png",
        }
    }
    assert [t["data"]["hb_image"] for t in tasks] == find_images(images)


def test_url_tasks_and_argument_errors(images, tmp_path):
    tasks = make_tasks(["b.jpg"], images, url_prefix="https://img.example/hb/")
    assert tasks[0]["data"]["image"] == "https://img.example/hb/b.jpg"
    with pytest.raises(TaskFileError, match="exactly one"):
        make_tasks(["b.jpg"], images)
    with pytest.raises(TaskFileError, match="not under the document root"):
        make_tasks(["b.jpg"], images, document_root=tmp_path / "elsewhere")
    with pytest.raises(TaskFileError, match="no image"):
        make_tasks([], images, url_prefix="/")


def test_project_settings_give_every_task_min_raters_annotators():
    body = project_settings(min_raters=9)
    assert body["maximum_annotations"] == 9 and body["overlap_cohort_percentage"] == 100
    assert body["label_config"] == labeling_config()
    assert project_settings(min_raters=9, overlap=12)["maximum_annotations"] == 12
    with pytest.raises(TaskFileError, match="below min_raters"):
        project_settings(min_raters=9, overlap=5)
    with pytest.raises(ValueError, match="min_raters"):
        project_settings(min_raters=0)


def test_keep_list_from_the_face_filter(images, tmp_path, monkeypatch):
    faces = tmp_path / "faces.jsonl"
    lines = [
        {"path": str(images / "b.jpg"), "keep": True},
        {"path": str(images / "Z.JPEG"), "keep": False, "reason": "multi_face"},
        {"path": str(tmp_path / "other.jpg"), "keep": True},
    ]
    faces.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert read_keep_list(faces, images) == {"b.jpg"}
    faces.write_text('{"path": "b.jpg"}\n')
    with pytest.raises(TaskFileError, match="path and keep"):
        read_keep_list(faces, images)
    faces.write_text("nonsense\n")
    with pytest.raises(TaskFileError, match="not a JSON line"):
        read_keep_list(faces, images)


def test_tasks_command(images, tmp_path, capsys):
    faces = tmp_path / "faces.jsonl"
    faces.write_text(
        "\n".join(
            json.dumps({"path": str(images / p), "keep": p != "Z.JPEG"})
            for p in find_images(images)
        )
    )
    out, project = tmp_path / "tasks.json", tmp_path / "project.json"
    argv = ["-q", "tasks", str(images), "-o", str(out), "--document-root", str(tmp_path)]
    assert main([*argv, "--keep", str(faces), "--project", str(project), "--overlap", "10"]) == 0
    tasks = json.loads(out.read_text())
    assert [t["data"]["hb_image"] for t in tasks] == ["a dir/c d.png", "b.jpg"]
    assert json.loads(project.read_text())["maximum_annotations"] == 10
    assert main([*argv, "--overlap", "3"]) == 1
    assert "below min_raters" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["tasks", str(tmp_path / "none"), "-o", str(out), "--url-prefix", "/"])
    assert exc.value.code == 2
