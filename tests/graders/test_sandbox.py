"""Python graders run in a limited child process: what they may do, and what stops them."""

import os
import resource
import socket
import subprocess
import sys
import time

import pytest

from preftune.errors import GraderError
from preftune.graders.sandbox import run_child, run_python_grader

SAMPLE = {"output_text": "4", "output_json": None}
ITEM = {"answer": "4"}


def run(source, timeout_s=5.0, memory_mb=256, name="exact"):
    return run_python_grader(name, source, SAMPLE, ITEM, timeout_s=timeout_s,
                             memory_mb=memory_mb)


def refused(source, **kw):
    with pytest.raises(GraderError) as e:
        run(source, **kw)
    return e.value.message


def test_a_correct_grader_returns_its_value():
    source = ("import json, math, re, collections, difflib, statistics, fractions, decimal\n"
              "def grade(sample, item):\n"
              "    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n")
    assert run(source) == 1.0
    assert run("def grade(sample, item):\n    return 0.25\n") == 0.25


def test_it_may_print_and_use_its_own_directory():
    source = ("def grade(sample, item):\n"
              "    print('thinking...')\n"
              "    with open('notes.txt', 'w') as f:\n"
              "        f.write('x' * 10)\n"
              "    return len(open('notes.txt').read()) / 20\n")
    assert run(source) == 0.5


def test_an_endless_loop_is_stopped_at_the_timeout():
    start = time.monotonic()
    message = refused("def grade(sample, item):\n    while True:\n        pass\n", timeout_s=1.5)
    assert time.monotonic() - start < 5
    assert message == "python grader 'exact': timed out after 1.5 s"


def test_a_huge_allocation_is_stopped():
    message = refused("def grade(sample, item):\n    x = bytearray(10**10)\n    return 1.0\n")
    assert message == "python grader 'exact': ran out of memory (limit 256 MiB)"


def test_a_socket_to_localhost_is_refused_even_if_the_grader_catches_the_error():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    source = ("import socket\n"
              "def grade(sample, item):\n"
              "    try:\n"
              f"        socket.socket().connect(('127.0.0.1', {port}))\n"
              "    except Exception:\n"
              "        pass\n"
              "    return 1.0\n")
    try:
        message = refused(source)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert message == ("python grader 'exact': opened a network socket (socket.__new__), "
                       "which graders may not do")


def test_reading_system_and_repository_files_is_refused():
    message = refused("def grade(sample, item):\n    return len(open('/etc/passwd').read())\n")
    assert message == ("python grader 'exact': read /etc/passwd, outside its temporary "
                       "directory, which graders may not do")
    here = os.path.abspath(__file__)
    message = refused(f"def grade(sample, item):\n    return len(open({here!r}).read())\n")
    assert f"read {os.path.realpath(here)}, outside its temporary directory" in message
    message = refused("import os\ndef grade(sample, item):\n    return len(os.listdir('/'))\n")
    assert "listed /, outside its temporary directory" in message


def test_writing_outside_its_directory_is_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    message = refused(f"def grade(sample, item):\n    open({str(target)!r}, 'w').write('x')\n"
                      "    return 1.0\n")
    assert f"wrote {target}, outside its temporary directory" in message
    assert not target.exists()
    message = refused("def grade(sample, item):\n    open('../up.txt', 'w')\n    return 1.0\n")
    assert "wrote ../up.txt, outside its temporary directory" in message


@pytest.mark.parametrize(("source", "message"), [
    ("import subprocess\ndef grade(s, i):\n    return 1.0\n",
     "started a process (import subprocess)"),
    ("import os\ndef grade(s, i):\n    os.system('true')\n    return 1.0\n",
     "started a process (os.system)"),
    ("import os\ndef grade(s, i):\n    os.fork()\n    return 1.0\n", "started a process (os.fork)"),
    ("import os\ndef grade(s, i):\n    os.execv('/bin/true', ['true'])\n",
     "started a process (os.exec)"),
    ("import ctypes\ndef grade(s, i):\n    return 1.0\n", "loaded native code (import ctypes)"),
    ("import os\ndef grade(s, i):\n    os.symlink('/etc/passwd', 'p')\n    return 1.0\n",
     "made a link p"),
    ("import gc\ndef grade(s, i):\n    gc.get_objects()\n    return 1.0\n",
     "called gc.get_objects"),
])
def test_processes_native_code_and_links_are_refused(source, message):
    assert message in refused(source)


def test_third_party_packages_are_not_importable():
    message = refused("def grade(sample, item):\n    import pydantic\n    return 1.0\n")
    assert message.startswith("python grader 'exact': raised ModuleNotFoundError at line 2")


def test_environment_is_empty():
    source = ("import os\n"
              "def grade(sample, item):\n"
              "    return float(any(k not in ('LC_CTYPE',) for k in os.environ))\n")
    assert run(source) == 0.0


@pytest.mark.parametrize(("source", "message"), [
    ("def grade(s, i):\n    return 1 / 0\n",
     "raised ZeroDivisionError at line 2: division by zero"),
    ("def grade(s, i):\n    return 'high'\n", "grade() returned 'high', not a number"),
    ("def grade(s, i):\n    return True\n", "grade() returned True, not a number"),
    ("def grade(s, i):\n    return float('nan')\n", "grade() returned nan, not a finite number"),
    ("def grade(s, i):\n    raise SystemExit(3)\n", "raised SystemExit at line 2: 3"),
])
def test_bad_results_and_exceptions(source, message):
    assert refused(source) == f"python grader 'exact': {message}"


def test_the_calling_process_is_unaffected():
    cwd, limits = os.getcwd(), resource.getrlimit(resource.RLIMIT_AS)
    refused("def grade(sample, item):\n    x = bytearray(10**10)\n")
    assert "changed directory to /, outside" in refused(
        "import os\ndef grade(sample, item):\n    os.chdir('/')\n")
    assert os.getcwd() == cwd
    assert resource.getrlimit(resource.RLIMIT_AS) == limits
    with socket.create_server(("127.0.0.1", 0)) as server:  # the parent may still use sockets
        assert server.getsockname()[1] > 0
    assert run("def grade(sample, item):\n    return 1.0\n") == 1.0


def test_patching_os_path_or_builtins_does_not_loosen_the_guard():
    source = ("import builtins, os, posixpath\n"
              "os.path.realpath = lambda path, **kw: os.getcwd()\n"
              "posixpath.normpath = lambda path: os.getcwd()\n"
              "builtins.isinstance = lambda *args: True\n"
              "def grade(sample, item):\n"
              "    return len(open('/etc/passwd').read())\n")
    assert "read /etc/passwd, outside its temporary directory" in refused(source)


def test_path_like_objects_are_checked_by_the_path_they_name():
    """CPython converts a path-like object once and audits the converted path."""
    source = ("class Sly:\n"
              "    calls = 0\n"
              "    def __fspath__(self):\n"
              "        Sly.calls += 1\n"
              "        return 'ok.txt' if Sly.calls > 1 else '/etc/passwd'\n"
              "def grade(sample, item):\n"
              "    return len(open(Sly()).read())\n")
    assert "read /etc/passwd, outside its temporary directory" in refused(source)


def test_output_is_bounded_by_the_file_size_limit():
    source = "def grade(sample, item):\n    print('x' * (4 << 20))\n    return 1.0\n"
    assert "File too large" in refused(source)


PROBE = ("import ctypes, os, sys\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         "flags = 0x40000000 if os.geteuid() == 0 else 0x50000000\n"
         "sys.exit(0 if libc.unshare(flags) == 0 else 1)\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are Linux")
def test_the_child_has_no_network_where_the_kernel_allows_it():
    allowed = subprocess.run([sys.executable, "-c", PROBE], check=False).returncode == 0
    if not allowed:
        pytest.skip("this kernel or container refuses new network namespaces")
    answer, code, _ = run_child("def grade(sample, item):\n    return 1.0\n", SAMPLE, ITEM,
                                timeout_s=5, memory_mb=256, where="g")
    assert (answer, code) == ({"score": 1.0, "network_isolated": True}, 0)


def test_the_number_of_files_written_is_bounded():
    source = ("def grade(sample, item):\n"
              "    for i in range(1000):\n"
              "        open(f'f{i}.txt', 'w').close()\n"
              "    return 1.0\n")
    assert "opened files for writing more than 64 times" in refused(source)
