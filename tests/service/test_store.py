"""The store's downloads (built once, shared, rebuilt when the model changes), the leftovers
of killed processes, and a deleted job's bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from preftune.errors import UsageError
from preftune.service import store as store_module
from preftune.service.store import Store

JOB = "ftjob-" + "a" * 24
OTHER = "ftjob-" + "b" * 24


def _model(store: Store, job_id: str = JOB):
    final = store.run_dir(job_id) / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text('{"n": 1}')
    (final / "model.safetensors").write_bytes(os.urandom(200_000))
    return final


def _builds(monkeypatch) -> list[str]:
    """Count archive builds: each build adds the model directory to a tarball once."""
    built: list[str] = []
    add = tarfile.TarFile.add

    def counting(self, name, arcname=None, *args, **kwargs):
        if arcname is not None and "/" not in str(arcname):
            built.append(str(arcname))
        return add(self, name, arcname, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "add", counting)
    return built


def test_concurrent_downloads_share_one_archive(store, monkeypatch):
    source = _model(store)
    built = _builds(monkeypatch)
    paths: list[os.PathLike] = []
    start = threading.Barrier(8)

    def download() -> None:
        start.wait()
        paths.append(store.archive(source, f"{JOB}-final"))

    threads = [threading.Thread(target=download) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 8 and len(set(paths)) == 1 and built == [f"{JOB}-final"]
    on_disk = sorted(p.name for p in store.downloads_dir.iterdir())
    assert on_disk == [f"{JOB}-final.lock", f"{JOB}-final.tar.gz"]  # no temporaries left
    with tarfile.open(paths[0]) as tar:
        assert sorted(tar.getnames()) == [f"{JOB}-final", f"{JOB}-final/config.json",
                                          f"{JOB}-final/model.safetensors"]
        assert tar.extractfile(f"{JOB}-final/config.json").read() == b'{"n": 1}'


def test_an_archive_is_reused_until_its_model_changes(store, monkeypatch):
    source = _model(store)
    built = _builds(monkeypatch)
    first = store.archive(source, f"{JOB}-final")
    inode = first.stat().st_ino
    assert store.archive(source, f"{JOB}-final").stat().st_ino == inode and len(built) == 1
    time.sleep(0.01)
    (source / "config.json").write_text('{"n": 2}')
    again = store.archive(source, f"{JOB}-final")
    assert again == first and len(built) == 2
    with tarfile.open(again) as tar:
        assert tar.extractfile(f"{JOB}-final/config.json").read() == b'{"n": 2}'


def test_a_killed_build_is_rebuilt_not_served(store, monkeypatch):
    """A build that dies midway leaves the lock file without a signature (or an old one):
    the next download builds again rather than serve a torn archive."""
    source = _model(store)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(tarfile.TarFile, "add", dies)
        with pytest.raises(KeyboardInterrupt):
            store.archive(source, f"{JOB}-final")
    assert sorted(p.name for p in store.downloads_dir.iterdir()) == [f"{JOB}-final.lock"]
    with tarfile.open(store.archive(source, f"{JOB}-final")) as tar:
        assert f"{JOB}-final/model.safetensors" in tar.getnames()


def test_archive_names_are_checked(store):
    source = _model(store)
    for name in ("../x", f"{JOB}-../../x", "final", f"{JOB}-", ".hidden"):
        with pytest.raises(UsageError, match="bad archive name"):
            store.archive(source, name)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temporary(path, age_s: float = 0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(store):
    host, dead = store_module._host(), _dead_pid()
    files, downloads = store.files_dir, store.downloads_dir
    stale_upload = _temporary(files / f".upload-{host}-{dead}-x")
    stale_archive = _temporary(downloads / f".{JOB}-final-{host}-{dead}-x.tmp")
    live_upload = _temporary(files / f".upload-{host}-{os.getpid()}-x")
    live_archive = _temporary(downloads / f".{JOB}-final-{host}-{os.getpid()}-y.tmp")
    other_host = _temporary(files / f".upload-elsewhere-{dead}-x")
    old_other_host = _temporary(files / f".upload-elsewhere-{dead}-y", age_s=25 * 3600)
    old_format = _temporary(downloads / f".{JOB}-final-0123ab.tar.gz", age_s=25 * 3600)
    kept_file = _temporary(files / "file-x.jsonl", age_s=25 * 3600)  # not a temporary
    aside = store.jobs_dir / f".deleted-{JOB}-{host}-{dead}-z"
    (aside / "run").mkdir(parents=True)

    removed = store.clean_temporaries()
    assert sorted(removed) == sorted([stale_upload, stale_archive, old_other_host,
                                      old_format, aside])
    for path in (live_upload, live_archive, other_host, kept_file):
        assert path.exists()
    assert not aside.exists()
    assert store.clean_temporaries() == []


def test_an_upload_in_progress_is_named_by_its_host_and_process(store):
    seen: list[str] = []

    def chunks():
        yield b'{"prompt": "p", '
        seen.extend(p.name for p in store.files_dir.iterdir())
        yield b'"chosen": "a", "rejected": "b"}\n'

    with store.saving("file-" + "c" * 24, chunks(), "d.jsonl", limit=1000) as (name, size):
        # Complete on disk, waiting for its row: under a hidden pending name.
        (pending,) = [p.name for p in store.files_dir.iterdir()]
        assert pending.startswith(f".pending-{name}-{store_module._host()}-{os.getpid()}-")
    assert (store.files_dir / name).read_bytes().startswith(b'{"prompt"') and size > 0
    (partial,) = seen
    assert partial.startswith(f".upload-{store_module._host()}-{os.getpid()}-")
    assert sorted(p.name for p in store.files_dir.iterdir()) == [name]


def test_an_upload_whose_row_fails_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.saving("file-" + "d" * 24, [b"{}\n"], "d.jsonl",
                                                   limit=1000):
        raise RuntimeError("the database refused the row")
    assert list(store.files_dir.iterdir()) == []


def test_a_pending_upload_of_a_dead_process_is_finished_or_undone_by_its_row(store):
    """A process killed between committing a file's row and moving its bytes into place
    leaves a pending file: moved into place when the row exists, removed when it does not."""
    host = store_module._host()
    dead = _dead_pid()
    store.files_dir.mkdir(parents=True, exist_ok=True)
    committed, lost = "file-" + "e" * 24 + ".jsonl", "file-" + "f" * 24 + ".json"
    for name in (committed, lost):
        (store.files_dir / f".pending-{name}-{host}-{dead}-ab12").write_bytes(b"{}\n")
    live = store.files_dir / f".pending-file-{'a' * 24}.jsonl-{host}-{os.getpid()}-ab12"
    live.write_bytes(b"{}\n")
    removed = store.clean_temporaries(recorded=lambda name: name == committed)
    assert (store.files_dir / committed).read_bytes() == b"{}\n"
    assert [p.name for p in removed] == [f".pending-{lost}-{host}-{dead}-ab12"]
    assert live.exists()  # its process is alive: still between its row and its rename
    assert sorted(p.name for p in store.files_dir.iterdir()) == sorted([committed, live.name])


def test_deleting_a_job_removes_its_directory_and_archives_only(store):
    mine, other = _model(store, JOB), _model(store, OTHER)
    store.archive(mine, f"{JOB}-final")
    store.archive(mine, f"{JOB}-step-2")
    store.archive(other, f"{OTHER}-final")
    store.delete_job_dir(JOB)
    assert not store.job_dir(JOB).exists() and store.job_dir(OTHER).is_dir()
    assert sorted(p.name for p in store.downloads_dir.iterdir()) == [
        f"{OTHER}-final.lock", f"{OTHER}-final.tar.gz"]
    assert sorted(p.name for p in store.jobs_dir.iterdir()) == [OTHER]
    store.delete_job_dir(JOB)  # twice is harmless
    with pytest.raises(FileNotFoundError):  # its model is gone: no archive is made again
        store.archive(mine, f"{JOB}-final")
