"""The export folder never loses what the user wrote: ownership, the swap, the build lock."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from hae_data.export import EmptyExportError, export_dataset
from hae_data.outdir import (
    MANIFEST_NAME,
    BuildBusyError,
    BuildLock,
    BuildRefusedError,
    ExportFolder,
    atomic_path,
    check_not_overlapping,
    write_text_atomic,
)
from hae_data.records import Rejection
from tests.data.test_export import make_records


def _tree(folder):
    """Every file under ``folder`` with its bytes (the project's own lock file excluded)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".humanbeauty.lock"
    }


def _rows(out):
    return sorted(
        row["image_id"]
        for path in sorted((out / "data").rglob("*.parquet"))
        for row in pq.read_table(path, columns=["image_id"]).to_pylist()
    )


@pytest.mark.parametrize(
    ("output", "how"),
    [(".", "contains"), ("data/AVA", "is"), ("data/AVA/out", "lies inside")],
)
def test_an_output_folder_overlapping_a_source_is_refused(tmp_path, output, how):
    (tmp_path / "data" / "AVA").mkdir(parents=True)
    with pytest.raises(BuildRefusedError, match=how):
        check_not_overlapping(tmp_path / output, [str(tmp_path / "data" / "AVA")])
    check_not_overlapping(tmp_path / "elsewhere", [str(tmp_path / "data" / "AVA")])


def test_a_symlink_to_a_source_counts_as_the_source(tmp_path):
    (tmp_path / "AVA").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "AVA")
    with pytest.raises(BuildRefusedError, match="is the source folder"):
        check_not_overlapping(tmp_path / "link", [str(tmp_path / "AVA")])


def test_export_into_a_folder_of_the_users_touches_nothing(tmp_path):
    """``--output-dir .`` in a folder holding raw datasets and a README: refused, untouched."""
    home = tmp_path / "home"
    (home / "data" / "AVA").mkdir(parents=True)
    (home / "data" / "AVA" / "AVA.txt").write_text("1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n")
    (home / "README.md").write_text("my notes\n")
    before = _tree(home)
    recs, rej = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    with pytest.raises(BuildRefusedError, match="not an export of this project"):
        export_dataset(recs, rej, home)
    assert _tree(home) == before


def test_a_previous_export_without_manifest_is_recognised(tmp_path):
    recs, rej = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    out = tmp_path / "out"
    export_dataset(recs, rej, out)
    (out / MANIFEST_NAME).unlink()  # as an export of an earlier version left it
    (out / "_work").mkdir()
    export_dataset(recs, rej, out)
    assert (out / MANIFEST_NAME).is_file()


def test_only_entries_the_project_wrote_are_replaced(tmp_path):
    recs, rej = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    out = tmp_path / "out"
    export_dataset(recs, rej, out)
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()  # a name an export could write, but this one did not
    (out / "plots" / "mine.png").write_bytes(b"png")
    with pytest.raises(BuildRefusedError, match="plots"):
        ExportFolder(out).check_usable()
    with pytest.raises(BuildRefusedError, match="plots"):
        export_dataset(recs, rej, out, extra_files={"plots/a.png": out / "notes.txt"})
    assert (out / "plots" / "mine.png").read_bytes() == b"png"
    (out / "plots" / "mine.png").unlink()
    (out / "plots").rmdir()
    export_dataset(recs[:4], rej, out)
    assert (out / "notes.txt").read_text() == "mine"
    assert len(_rows(out)) == 4


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


def _kill_at(monkeypatch, step: int):
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == step:
            raise _Killed(f"killed at rename {step}")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_kill_at_any_point_of_the_swap_is_finished_or_rolled_back(tmp_path, monkeypatch):
    old_recs, rej = make_records(tmp_path / "old", n_overall=5, n_fine=3)
    new_recs, _ = make_records(tmp_path / "new", n_overall=9, n_fine=4)
    # How many renames one export makes, to kill it at each of them.
    probe = tmp_path / "probe"
    export_dataset(old_recs, rej, probe)
    calls = _kill_at(monkeypatch, step=10**9)
    export_dataset(new_recs, rej, probe)
    steps = calls["n"]
    monkeypatch.undo()
    assert steps > 5
    old_ids, new_ids = sorted(r.image_id for r in old_recs), sorted(r.image_id for r in new_recs)

    for step in range(1, steps + 1):
        out = tmp_path / f"out-{step}"
        export_dataset(old_recs, rej, out)
        _kill_at(monkeypatch, step)
        with pytest.raises(_Killed):
            export_dataset(new_recs, rej, out)
        monkeypatch.undo()
        ExportFolder(out).recover()  # what the next build does first, under its lock
        assert _rows(out) in (old_ids, new_ids), step
        names = {p.name for p in out.iterdir()}
        assert {"data", "README.md", "rejected.parquet", MANIFEST_NAME} <= names, step
        leftovers = [n for n in names if "staging" in n or "-old-" in n or "swap" in n]
        assert not leftovers, (step, leftovers)


def test_a_build_that_keeps_nothing_leaves_the_previous_export(tmp_path):
    recs, rej = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    out = tmp_path / "out"
    export_dataset(recs, rej, out)
    before = _tree(out)
    gone = [Rejection.from_record(r, "missing_file", "load", "unmounted") for r in recs]
    with pytest.raises(EmptyExportError, match="no image at all") as err:
        export_dataset([], gone, out)
    assert "missing_file: " in str(err.value)
    assert _tree(out) == before
    # A source that was given but kept nothing (its folder moved) counts as collapsed too.
    ava = [r for r in recs if r.source == "ava"]
    with pytest.raises(EmptyExportError, match="no image of tad66k"):
        export_dataset(ava, [], out, expected_sources=["ava", "tad66k"])
    assert _tree(out) == before
    export_dataset([], gone, out, allow_empty=True)
    assert _rows(out) == []


def test_a_second_build_on_the_same_folder_is_refused_until_the_first_dies(tmp_path):
    from tests.flows.conftest import lock_held_elsewhere

    out = tmp_path / "out"
    recs, rej = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    with lock_held_elsewhere(out) as holder:
        with pytest.raises(BuildBusyError, match=f"pid {holder.pid}"):
            BuildLock(out).acquire()
        with pytest.raises(BuildBusyError):
            export_dataset(recs, rej, out)
    with BuildLock(out), BuildLock(out):  # released by the holder's death; re-entrant here
        pass
    export_dataset(recs, rej, out)


def test_atomic_writes_never_leave_half_a_file_nor_share_a_temporary(tmp_path) -> None:
    """Two processes writing one file at once each write their own temporary; a failed write
    leaves the previous file as it was and no temporary behind."""
    import subprocess
    import sys

    target = tmp_path / "config.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old\n"
    script = (
        "import sys\n"
        "from hae_data.outdir import write_text_atomic\n"
        "for i in range(200):\n"
        "    write_text_atomic(sys.argv[1], sys.argv[2] * 50_000 + '\\n')\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(target), letter]) for letter in "ab"
    ]
    while any(w.poll() is None for w in writers):
        text = target.read_text()
        assert text in ("a" * 50_000 + "\n", "b" * 50_000 + "\n", "old\n")
    assert [w.returncode for w in writers] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
