"""End-to-end tests of `hae_data.hub.push_to_hub`: the real huggingface_hub client, over real
HTTP, against the local Hub stand-in of `tests/data/hub_server.py`. Nothing is patched.

Pushes run in child Python processes (see `Pusher`): huggingface_hub reads `HF_ENDPOINT` and
`HF_HUB_DISABLE_XET` when it is first imported, and this process imported it in offline mode
(tests/conftest.py). One child pushes over LFS (`HF_HUB_DISABLE_XET=1`: every byte can be
checked), one over Xet, huggingface_hub's default. The children log everything at DEBUG (with
`HF_DEBUG=1`, every request as a curl line); the tests search all of it for the token.
Together these tests take about 15 s.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hae_data.export import export_dataset
from hae_data.hub import describe_export, push_to_hub
from tests.data.hub_server import DROP, LOSE_RESPONSE, XET_ACCESS_TOKEN, LocalHub
from tests.data.test_export import make_records

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_TestTokenThatMustNeverBeLogged0123456789"
REPO = "humanbeauty-org/humanbeauty-test"

# The child: one interpreter for the module, pointed at the module's server by HF_ENDPOINT. Each
# request line runs some pushes with extra env vars, capturing everything written to fd 1 and 2
# (log records, HF_DEBUG curl lines, progress bars), and answers one JSON line on its own fd.
_WORKER = r"""
import json, logging, os, sys, tempfile, time, traceback
answers = os.fdopen(os.dup(1), "w")
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(levelname)s %(name)s: %(message)s")
from hae_data.hub import push_to_hub

def run(push):
    start = time.perf_counter()
    try:
        result = {"url": push_to_hub(**push)}
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc),
                  "status_code": getattr(exc, "status_code", None),
                  "transient": getattr(exc, "transient", None),
                  "traceback": "".join(traceback.format_exception(exc))}
    result["elapsed"] = time.perf_counter() - start
    return result

for line in iter(sys.stdin.readline, ""):
    request = json.loads(line)
    saved_env = {key: os.environ.get(key) for key in request["env"]}
    os.environ.update(request["env"])
    with tempfile.TemporaryFile() as capture:
        saved_fds = os.dup(1), os.dup(2)
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            results = [run(push) for push in request["pushes"]]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved in zip((1, 2), saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
        capture.seek(0)
        output = capture.read().decode("utf-8", "replace")
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    answers.write(json.dumps({"results": results, "output": output}) + "\n")
    answers.flush()
"""


@dataclass
class Pushes:
    """What the worker reported: one result per push, and everything written while pushing."""

    results: list[dict[str, Any]]
    stderr: str

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.results) == 1, self.results
        return self.results[0]


class Pusher:
    """A long-lived child interpreter that runs pushes: huggingface_hub reads HF_ENDPOINT and
    HF_HUB_DISABLE_XET once at import, and this test process imported it offline long ago."""

    def __init__(self, endpoint: str, workdir: Path, *, xet: bool = False) -> None:
        self.hf_home = workdir / "hf_home"
        # tests/conftest.py makes this process offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"
        }
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        env.update(
            HF_ENDPOINT=endpoint,
            HF_HOME=str(self.hf_home),  # no cached login from the machine
            HF_DEBUG="1",
            HF_HUB_VERBOSITY="debug",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONPATH=str(REPO_ROOT),
        )
        self._stderr = (workdir / "worker.stderr").open("w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def run(self, pushes: list[dict[str, Any]], env: dict[str, str] | None = None) -> Pushes:
        """Run `push_to_hub(**kwargs)` for each kwargs, in order, in the worker."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        args = [{**p, "folder": str(p["folder"])} for p in pushes]
        self._proc.stdin.write(json.dumps({"pushes": args, "env": env or {}}) + "\n")
        self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], 60)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self._stderr.seek(0)
            raise AssertionError(f"push worker gave no answer:\n{self._stderr.read()[-4000:]}")
        answer = json.loads(line)
        return Pushes(answer["results"], answer["output"])

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._stderr.close()


def _parquet(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "image_id": [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(rows)],
            "score": rng.random(rows),
            "image": [rng.bytes(64) for _ in range(rows)],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _card(shards: dict[str, list[str]]) -> str:
    configs = "".join(
        f"- config_name: {name}\n  data_files:\n"
        + "".join(f"  - split: {split}\n    path: data/{name}/{split}-*\n" for split in splits)
        for name, splits in shards.items()
    )
    return f"---\nlicense: other\nconfigs:\n{configs}---\n\n# HumanBeauty (test export)\n"


def make_export(folder: Path, *, fine_grained_shards: int = 2, seed: int = 0) -> Path:
    """A miniature export: the layout and file kinds hae_data.export writes."""
    _parquet(folder / "data/overall/train-00000-of-00001.parquet", 40, seed)
    _parquet(folder / "data/overall/test-00000-of-00001.parquet", 10, seed + 1)
    n = fine_grained_shards
    for i in range(n):
        _parquet(folder / f"data/fine_grained/train-{i:05d}-of-{n:05d}.parquet", 150, seed + 10 + i)
    _parquet(folder / "data/fine_grained/test-00000-of-00001.parquet", 10, seed + 2)
    _parquet(folder / "rejected.parquet", 5, seed + 3)
    (folder / "README.md").write_text(
        _card({"overall": ["train", "test"], "fine_grained": ["train", "test"]}), encoding="utf-8"
    )
    (folder / "stats.json").write_text(json.dumps({"rows": 50, "seed": seed}), encoding="utf-8")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 10, 20)).save(buffer, format="PNG")
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots/score_hist.png").write_bytes(buffer.getvalue())
    return folder


def local_files(folder: Path) -> dict[str, bytes]:
    """The files a push uploads: the export's own bookkeeping (hidden files) stays local."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def n_lfs(folder: Path) -> int:
    """How many files of a test export the server stores with LFS (by its .gitattributes)."""
    return sum(1 for path in local_files(folder) if path.endswith((".parquet", ".png")))


def remote_files(hub: LocalHub, branch: str = "main") -> dict[str, bytes]:
    files = hub.repo(REPO).files(branch)
    assert files.pop(".gitattributes").startswith(b"*.parquet filter=lfs")
    return files


def assert_clean(hub: LocalHub) -> None:
    assert hub.unhandled == [], "the client called an endpoint the server does not know"
    assert hub.errors == []


@pytest.fixture(scope="module")
def hub_server():
    with LocalHub(valid_tokens={TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def pusher(hub_server, tmp_path_factory):
    worker = Pusher(hub_server.url, tmp_path_factory.mktemp("push-worker"))
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def xet_pusher(hub_server, tmp_path_factory):
    worker = Pusher(hub_server.url, tmp_path_factory.mktemp("xet-push-worker"), xet=True)
    yield worker
    worker.close()


@pytest.fixture
def hub(hub_server):
    hub_server.reset()
    return hub_server


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return make_export(tmp_path / "export")


def test_push_uploads_every_file_to_a_private_dataset_repo(pusher, hub, export_dir):
    manifest = describe_export(export_dir)
    local = local_files(export_dir)
    # Not part of the export: a flow's work folder and an editor's droppings stay local.
    (export_dir / "work").mkdir()
    (export_dir / "work/decoded.bin").write_bytes(b"\0" * 100)
    (export_dir / "data/.DS_Store").write_bytes(b"x")

    pushed = pusher.run([{"folder": export_dir, "repo_id": REPO, "token": TOKEN}])

    result = pushed.only
    assert "error" not in result, result
    repo = hub.repo(REPO)
    assert repo.repo_type == "dataset"
    assert repo.private is True
    assert repo.create_payload["visibility"] == "private"
    assert repo.create_payload["type"] == "dataset"
    assert result["url"] == f"{hub.url}/datasets/{REPO}/commit/{repo.heads['main']}"

    # Every byte arrived, Parquet and PNG through LFS storage, text files inline in the commit.
    assert remote_files(hub) == local
    commit = repo.commits[-1]
    kinds = {path: key for key, path in commit.operations}
    assert kinds == {
        path: "lfsFile" if path.endswith((".parquet", ".png")) else "file" for path in local
    }
    for path, content in local.items():
        if kinds[path] == "lfsFile":
            assert hub.lfs_objects[hashlib.sha256(content).hexdigest()] == content
    assert sorted(hub.lfs_uploads) == sorted(
        hashlib.sha256(c).hexdigest() for p, c in local.items() if kinds[p] == "lfsFile"
    )
    assert hub.calls["lfs_upload"] == n_lfs(export_dir)
    assert commit.summary.startswith(f"Upload HumanBeauty export ({len(local)} files, ")

    # The token went to the Hub API as a bearer header on every call, never into a log line.
    api_calls = [r for r in hub.api_requests() if r.route != "agent_harnesses"]
    assert {r.route for r in api_calls} >= {"create", "repo_info", "preupload", "commit"}
    assert all(r.authorization == f"Bearer {TOKEN}" for r in api_calls)
    assert "curl" in pushed.stderr  # HF_DEBUG really logged the requests
    assert TOKEN not in pushed.stderr
    assert f"dataset repo {REPO}" in pushed.stderr
    assert f"{len(manifest.files)} files" in pushed.stderr
    assert f"{manifest.total_bytes} bytes" in pushed.stderr
    assert_clean(hub)


def test_the_default_upload_path_xet_commits_every_file_by_its_sha256(xet_pusher, hub, export_dir):
    """huggingface_hub 2.4 uploads through Xet whenever hf_xet is installed (a dependency of it):
    the Hub hands out a short-lived CAS token, hf_xet chunks the files into xorbs and shards
    for the CAS, and the commit names each large file by its sha256. The local CAS accepts
    xorbs and shards without decoding them: what runs offline is the whole client path (Hub
    token only to the Hub, CAS token only to the CAS, the commit), not the check that the
    xorbs reconstruct the bytes, which needs the Hub's own CAS service."""
    import huggingface_hub.utils._runtime as runtime

    assert runtime.is_package_available("hf_xet")
    local = local_files(export_dir)

    pushed = xet_pusher.run([{"folder": export_dir, "repo_id": REPO, "token": TOKEN}])

    assert "error" not in pushed.only, pushed.only
    assert hub.calls["xet_token"] == 1 and hub.xorbs and hub.shards
    assert hub.calls["lfs_batch"] == 0 and hub.lfs_uploads == []
    commit = hub.repo(REPO).commits[-1]
    stored = hub.repo(REPO).branches["main"]
    for path, content in local.items():
        if path.endswith((".parquet", ".png")):
            assert stored[path].sha256 == hashlib.sha256(content).hexdigest(), path
        else:
            assert stored[path].content == content, path
    assert {p for _, p in commit.operations} == set(local)
    for request in hub.requests:
        if request.path.startswith("/_cas/"):
            assert request.authorization == f"Bearer {XET_ACCESS_TOKEN}"
        elif request.route not in ("agent_harnesses", "lfs_upload"):
            assert request.authorization == f"Bearer {TOKEN}", request.path
    assert TOKEN not in pushed.stderr
    assert_clean(hub)


def test_a_transient_failure_says_so_and_calling_again_resumes(pusher, hub, export_dir):
    """The library tries once; its caller (the flow's Prefect task) retries a transient failure,
    and each retry resumes: no LFS object is sent twice, a lost answer makes no second commit."""
    hub.fail("create", status=500)
    hub.fail("repo_info", status=DROP)  # connection closed without an answer
    hub.fail("commit", status=503)
    hub.fail("commit", status=LOSE_RESPONSE)  # committed, but the answer never arrives
    push = {"folder": export_dir, "repo_id": REPO, "token": TOKEN}

    pushed = pusher.run([push] * 5)

    *failed, done = pushed.results
    assert [r["error"] for r in failed] == ["HubPushError"] * 4
    assert all(r["transient"] is True for r in failed)
    assert [r["status_code"] for r in failed] == [500, None, 503, None]
    assert failed[0]["message"].startswith(f"create repo for {REPO} failed with HTTP 500")
    assert failed[1]["message"].startswith(f"read repo info for {REPO} failed with a connection")
    assert "calling again resumes" in failed[2]["message"]
    assert "error" not in done, done
    assert remote_files(hub) == local_files(export_dir)
    # The rerun after the lost answer found nothing left to commit: no duplicate commit.
    repo = hub.repo(REPO)
    assert hub.calls["commit"] == 2 and len(repo.commits) == 2
    assert done["url"] == f"{hub.url}/datasets/{REPO}/commit/{repo.heads['main']}"
    # Each rerun of the upload resumed: LFS storage received every object exactly once.
    assert len(hub.lfs_uploads) == len(set(hub.lfs_uploads)) == n_lfs(export_dir)
    assert TOKEN not in pushed.stderr
    assert_clean(hub)


@pytest.mark.parametrize(
    ("token", "fault", "status", "step"),
    [
        ("hf_WrongTokenAlsoNeverLogged987654321", None, 401, "create repo"),
        (TOKEN, ("commit", 403), 403, "upload"),
    ],
    ids=["401-bad-token", "403-on-commit"],
)
def test_client_errors_fail_fast_without_retries(
    pusher, hub, export_dir, token, fault, status, step
):
    if fault is not None:
        hub.fail(fault[0], times=1, status=fault[1])

    pushed = pusher.run([{"folder": export_dir, "repo_id": REPO, "token": token}])

    result = pushed.only
    assert result["error"] == "HubPushError"
    assert result["status_code"] == status and result["transient"] is False
    assert result["message"].startswith(f"{step} for {REPO} failed with HTTP {status}")
    route = "create" if fault is None else fault[0]
    assert hub.calls[route] == 1
    assert token not in result["message"] and token not in pushed.stderr
    if status == 401:
        assert "token was rejected" in result["message"]
        assert hub.repos == {}
    assert_clean(hub)


@pytest.mark.parametrize(("status", "transient"), [(401, False), (503, True)])
def test_a_server_that_echoes_the_token_never_gets_it_into_any_output(
    pusher, hub, export_dir, status, transient
):
    hub.fail("create", status=status, echo_authorization=True)

    pushed = pusher.run([{"folder": export_dir, "repo_id": REPO, "token": TOKEN}])

    result = pushed.only
    assert result["error"] == "HubPushError" and result["transient"] is transient
    assert "Authorization: Bearer" in result["message"]  # the echo itself reached us...
    for text in (result["message"], result["traceback"], pushed.stderr):
        assert TOKEN not in text  # ...the token did not, in the error, its chain or the logs
        assert TOKEN[:12] not in text
    # The chain is cut: the library's exception (holding the raw response) is not under it.
    assert "During handling" not in result["traceback"]
    assert "direct cause" not in result["traceback"]


def test_a_repush_mirrors_the_export_and_leaves_no_stale_shards(pusher, hub, tmp_path):
    first = make_export(tmp_path / "first", fine_grained_shards=3, seed=0)
    second = make_export(tmp_path / "second", fine_grained_shards=2, seed=7)
    (second / "plots/score_hist.png").unlink()

    pushed = pusher.run(
        [
            {"folder": first, "repo_id": REPO, "token": TOKEN},
            {"folder": second, "repo_id": REPO, "token": TOKEN, "commit_message": "Re-export"},
        ],
    )

    assert all("error" not in r for r in pushed.results), pushed.results
    # The export's entries are mirrored; .gitattributes, which the export does not manage, stays.
    assert remote_files(hub) == local_files(second)
    commit = hub.repo(REPO).commits[-1]
    assert commit.summary == "Re-export"
    deleted = sorted(path for key, path in commit.operations if key == "deletedFile")
    assert deleted == [
        *(f"data/fine_grained/train-{i:05d}-of-00003.parquet" for i in range(3)),
        "plots/score_hist.png",
    ]
    assert_clean(hub)


@pytest.mark.parametrize("source", ["HF_TOKEN", "cached-login"])
def test_token_from_env_or_login_and_push_to_a_branch(pusher, hub, export_dir, source):
    push = {"folder": export_dir, "repo_id": REPO, "revision": "v1.0"}
    if source == "HF_TOKEN":
        pushed = pusher.run([push], env={"HF_TOKEN": TOKEN})
    else:
        login = pusher.hf_home / "token"  # where `hf auth login` keeps it
        login.parent.mkdir(parents=True, exist_ok=True)
        login.write_text(TOKEN)
        try:
            pushed = pusher.run([push])
        finally:
            login.unlink()

    assert "error" not in pushed.only, pushed.only
    assert remote_files(hub, "v1.0") == local_files(export_dir)
    assert remote_files(hub, "main") == {}
    assert pushed.only["url"].endswith(hub.repo(REPO).heads["v1.0"])
    commits = [r for r in hub.api_requests() if r.route == "commit"]
    assert commits and all(r.authorization == f"Bearer {TOKEN}" for r in commits)
    assert TOKEN not in pushed.stderr
    assert_clean(hub)


def test_no_token_anywhere_is_a_clear_error_before_any_request(pusher, hub, export_dir):
    pushed = pusher.run([{"folder": export_dir, "repo_id": REPO}])

    assert pushed.only["error"] == "HubPushError"
    assert "no Hugging Face token" in pushed.only["message"]
    assert "HF_TOKEN" in pushed.only["message"]
    assert [r for r in hub.api_requests() if r.route != "agent_harnesses"] == []


def test_endpoint_argument_is_used_for_every_push_call(pusher, hub, export_dir):
    with LocalHub(valid_tokens={TOKEN}) as other:
        # HF_ENDPOINT names `hub`: the push must go where endpoint= says.
        pushed = pusher.run(
            [{"folder": export_dir, "repo_id": REPO, "token": TOKEN, "endpoint": other.url}]
        )
        assert "error" not in pushed.only, pushed.only
        assert pushed.only["url"].startswith(f"{other.url}/datasets/{REPO}/commit/")
        files = other.repo(REPO).files()
        assert_clean(other)

    files.pop(".gitattributes")
    assert files == local_files(export_dir)
    # huggingface_hub may fetch its agent registry from HF_ENDPOINT, whatever endpoint= says.
    assert set(hub.calls) <= {"agent_harnesses"}
    assert hub.repos == {}


def test_a_private_push_into_an_existing_public_repo_is_refused(pusher, hub, export_dir):
    push = {"folder": export_dir, "repo_id": REPO, "token": TOKEN}

    pushed = pusher.run([{**push, "private": False}, push])

    public, refused = pushed.results
    assert "error" not in public, public
    assert hub.repo(REPO).private is False
    assert hub.repo(REPO).create_payload["visibility"] == "public"
    assert refused["error"] == "HubPushError"
    assert "already exists and is public" in refused["message"]
    assert hub.calls["commit"] == 1
    assert_clean(hub)


def _no_readme(folder: Path) -> None:
    (folder / "README.md").unlink()


def _no_data(folder: Path) -> None:
    for shard in sorted((folder / "data").rglob("*"), reverse=True):
        shard.unlink() if shard.is_file() else shard.rmdir()
    (folder / "data").rmdir()


def _no_shards(folder: Path) -> None:
    for shard in (folder / "data").rglob("*.parquet"):
        shard.unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_no_readme, "not an export: missing README.md"),
        (_no_data, "not an export: missing data"),
        (_no_shards, "not an export: no Parquet shards"),
    ],
    ids=["no-readme", "no-data", "no-shards"],
)
def test_a_folder_that_is_not_an_export_is_rejected_before_any_request(export_dir, damage, message):
    damage(export_dir)
    with pytest.raises(ValueError, match=message):
        push_to_hub(export_dir, REPO, token=TOKEN, endpoint="http://127.0.0.1:9")


def test_missing_folder_file_and_bad_arguments_are_clear_errors(export_dir, tmp_path):
    kwargs = {"token": TOKEN, "endpoint": "http://127.0.0.1:9"}
    with pytest.raises(ValueError, match="does not exist"):
        push_to_hub(tmp_path / "nowhere", REPO, **kwargs)
    with pytest.raises(ValueError, match="is not a directory"):
        push_to_hub(export_dir / "stats.json", REPO, **kwargs)
    with pytest.raises(ValueError, match="namespace/name"):
        push_to_hub(export_dir, "no-namespace", **kwargs)


def test_describe_export_lists_what_a_push_uploads(export_dir):
    exported = local_files(export_dir)
    (export_dir / ".DS_Store").write_bytes(b"x")
    (export_dir / "data/overall/train-00001-of-00002.parquet.tmp").write_bytes(b"partial")
    (export_dir / "work").mkdir()
    (export_dir / "work/state.json").write_text("{}")
    (export_dir / "notes.txt").write_text("mine")

    manifest = describe_export(export_dir)

    assert list(manifest.files) == sorted(exported)
    assert manifest.total_bytes == sum(len(content) for content in exported.values())
    assert len(manifest.shards) == 5


def test_a_real_export_goes_up_byte_for_byte(pusher, hub, tmp_path):
    records, rejected = make_records(tmp_path / "images", n_overall=12, n_fine=8)
    summary = export_dataset(
        records, rejected, tmp_path / "export", shard_max_bytes=20_000, row_group_max_bytes=8_000
    )
    assert len(summary.shards["overall"]["train"]) > 1  # several shards per split

    pushed = pusher.run([{"folder": summary.output_dir, "repo_id": REPO, "token": TOKEN}])

    assert "error" not in pushed.only, pushed.only
    assert remote_files(hub) == local_files(summary.output_dir)
    kinds = {path: key for key, path in hub.repo(REPO).commits[-1].operations}
    assert {kinds[p] for p in kinds if p.endswith(".parquet")} == {"lfsFile"}
    assert kinds["README.md"] == kinds["stats.json"] == "file"
    # The card's YAML went through the server's validation (a real parse of the front matter).
    assert [r.status for r in hub.requests if r.route == "validate_yaml"] == [200, 200]
    assert_clean(hub)
