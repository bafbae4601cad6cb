"""The whole loop against a real Label Studio server: standard -> Label Studio -> export -> build.

Slow (``-m slow``): Label Studio is a Django application with about 330 dependencies that pin
their own versions, so it gets a virtual environment of its own, never the project's:
``$HAE_LABEL_STUDIO_VENV`` if set, else ``~/.cache/hae_data/label-studio-<version>``, created
on first use with ``pip install label-studio==<version>`` (about 1 GB; 18 minutes on a
2-core machine under load). The server runs on 127.0.0.1 only, with SQLite in a temporary
folder, the version check and analytics off: the test makes no request outside the loopback.

Through Label Studio's REST API (https://api.labelstud.io/ ; legacy ``Token`` auth enabled with
``--enable-legacy-api-token``): create the project from ``python -m hae_data.annotate tasks
--project`` (the generated labeling config, overlap 9), connect a local-files storage, import
the tasks, create ten users, post nine raters' annotations per image (and one skip) with
``completed_by``, export JSON and JSON-MIN, import both, and build the 12-dimension part.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotation_schema import load_standard
from hae_data.annotate.__main__ import main as annotate_main
from hae_data.annotate.labeling import SCALE_MAX
from hae_data.annotate.ls_import import import_export
from hae_data.annotate.synthetic import synthetic_ratings, to_scale
from hae_data.sources.fixtures import make_jpeg
from tests.annotate.helpers import build_fine_grained

pytestmark = pytest.mark.slow

LS_VERSION = "1.23.2"
KEYS = load_standard().keys
TOKEN = "hb0test0token0for0loopback0only"
ADMIN = ("admin@humanbeauty.test", "hb-loopback-only-1")


def _venv() -> Path:
    """Label Studio's own virtual environment, created on first use."""
    default = Path.home() / ".cache" / "hae_data" / f"label-studio-{LS_VERSION}"
    venv = Path(os.environ.get("HAE_LABEL_STUDIO_VENV", default))
    exe = venv / "bin" / "label-studio"
    if exe.exists():
        return venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0 or not exe.exists():
        shutil.rmtree(venv, ignore_errors=True)
        pytest.skip(f"label-studio=={LS_VERSION} could not be installed: {proc.stderr[-800:]}")
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Label Studio server on 127.0.0.1 with SQLite in a temporary folder; yields
    ``(base_url, document_root)``."""
    import httpx

    venv = _venv()
    home = tmp_path_factory.mktemp("label-studio")
    docroot = home / "files"
    docroot.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_USERNAME": ADMIN[0],
        "LABEL_STUDIO_PASSWORD": ADMIN[1],
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docroot),
        "LATEST_VERSION_CHECK": "false",  # else it asks PyPI for the newest version at start
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "OMP_NUM_THREADS": "1",
    }
    log = open(home / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "label-studio"),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--enable-legacy-api-token",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900  # first start runs every migration on SQLite
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited {proc.returncode}: {_tail(home / 'server.log')}")
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio did not answer in 900 s: {_tail(home / 'server.log')}")
            time.sleep(2)
        print(f"label-studio {LS_VERSION} up in {time.perf_counter() - started:.1f} s")
        yield base, docroot
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _tail(path: Path, n: int = 1500) -> str:
    return path.read_text(errors="replace")[-n:]


def _choices(points: dict[str, int]) -> list[dict]:
    """One annotation's result, as the labeling interface submits it."""
    return [
        {
            "from_name": key,
            "to_name": "image",
            "type": "choices",
            "value": {"choices": [str(points[key])]},
        }
        for key in KEYS
    ]


def test_round_trip_through_a_real_label_studio(server, tmp_path):
    import httpx

    base, docroot = server
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    # A new batch of images inside Label Studio's local-files document root.
    root = docroot / "HB-new"
    images = [f"person{i}.jpg" for i in range(4)]
    for i, name in enumerate(images):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / name).write_bytes(make_jpeg(i))
    tasks_file, project_file = tmp_path / "tasks.json", tmp_path / "project.json"
    assert (
        annotate_main(
            [
                "-q",
                "tasks",
                str(root / "images"),
                "--document-root",
                str(docroot),
                "-o",
                str(tasks_file),
                "--project",
                str(project_file),
                "--min-raters",
                "9",
            ]
        )
        == 0
    )

    api = httpx.Client(base_url=base, headers={"Authorization": f"Token {TOKEN}"}, timeout=120)

    def call(method: str, url: str, **kw) -> httpx.Response:
        r = api.request(method, url, **kw)
        assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text[:600]}"
        return r

    # Project from the generated config: Label Studio validates it on creation.
    project = call("POST", "/api/projects", json=json.loads(project_file.read_text())).json()
    pid = project["id"]
    assert project["maximum_annotations"] == 9
    call(
        "POST",
        "/api/storages/localfiles/",
        json={"project": pid, "path": str(root / "images"), "title": "new images"},
    )
    imported = call(
        "POST", f"/api/projects/{pid}/import", json=json.loads(tasks_file.read_text())
    ).json()
    assert imported["task_count"] == 4
    tasks = call("GET", "/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
    task_of = {t["data"]["hb_image"]: t["id"] for t in tasks}
    assert sorted(task_of) == images

    # The task URL serves the image to a logged-in annotator (session, as a browser would).
    browser = httpx.Client(base_url=base, timeout=60)
    browser.get("/user/login/")
    login = browser.post(
        "/user/login/",
        data={
            "email": ADMIN[0],
            "password": ADMIN[1],
            "csrfmiddlewaretoken": browser.cookies.get("csrftoken", ""),
        },
        headers={"Referer": f"{base}/user/login/"},
    )
    assert login.status_code in (200, 302), login.text[:300]
    first = next(t for t in tasks if t["data"]["hb_image"] == images[0])
    served = browser.get(first["data"]["image"])
    assert served.status_code == 200 and served.content == make_jpeg(0)
    timings["setup"] = time.perf_counter() - clock

    # Ten users; nine rate three images (known noise), the tenth skips one, one stays unrated.
    clock = time.perf_counter()
    users = [
        call(
            "POST",
            "/api/users/",
            json={"email": f"rater{i}@humanbeauty.test", "username": f"rater{i}"},
        ).json()["id"]
        for i in range(1, 11)
    ]
    noise = {str(u): 0.08 for u in users[:9]}
    df, _ = synthetic_ratings(3, noise, seed=16)
    points = to_scale(df[list(KEYS)].to_numpy())
    df["image"] = df["image"].map({f"img{i:04d}.jpg": images[i] for i in range(3)})
    for (image, rater), row in zip(zip(df["image"], df["rater"], strict=True), points, strict=True):
        call(
            "POST",
            f"/api/tasks/{task_of[image]}/annotations",
            json={
                "result": _choices(dict(zip(KEYS, row.tolist(), strict=True))),
                "completed_by": int(rater),
                "lead_time": 30.0,
            },
        )
    call(
        "POST",
        f"/api/tasks/{task_of[images[0]]}/annotations",
        json={"result": [], "was_cancelled": True, "completed_by": users[9]},
    )
    timings["annotate"] = time.perf_counter() - clock

    # Export both documented formats through the API, then import them.
    clock = time.perf_counter()
    exports = {}
    for fmt in ("JSON", "JSON_MIN"):
        r = call("GET", f"/api/projects/{pid}/export", params={"exportType": fmt})
        exports[fmt] = tmp_path / f"export-{fmt}.json"
        exports[fmt].write_bytes(r.content)
    timings["export"] = time.perf_counter() - clock

    clock = time.perf_counter()
    first_import = import_export(exports["JSON"], root)
    assert len(first_import.rows) == 27
    assert first_import.rejected_by_reason == {"cancelled_annotation": 1}
    assert {r["rater"] for r in first_import.rows} == set(noise)
    second = import_export(exports["JSON_MIN"], root)
    assert (len(second.rows), second.already_imported, second.rejections) == (0, 27, [])
    timings["import"] = time.perf_counter() - clock

    # Build the 12-dimension part from what was imported.
    clock = time.perf_counter()
    summary, source, records, _ = build_fine_grained(root, tmp_path / "out")
    timings["build"] = time.perf_counter() - clock
    assert sum(summary.rows["fine_grained"].values()) == 3
    assert len(source.reliability.raters) == 9
    for rec in records:
        image = rec.file_name.removeprefix("images/")
        rows = points[(df["image"] == image).to_numpy()]
        np.testing.assert_allclose(rec.dimension_scores, rows.mean(axis=0) / SCALE_MAX, atol=1e-12)
        assert rec.rater_count == 9
    card = (tmp_path / "out" / "README.md").read_text()
    assert "### Rater agreement (12-dimension part)" in card
    print("label-studio round trip timings (s):", {k: round(v, 2) for k, v in timings.items()})
