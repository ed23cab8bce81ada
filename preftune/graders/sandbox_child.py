"""The program a python grader runs inside: ``python -I -S -B -c <this file's text>``.

Never imported by preftune; ``sandbox.py`` passes its text to a fresh interpreter. It reads one
JSON request from stdin (source, sample, item, limits), writes one JSON answer to a private
copy of stdout, and sends whatever the grader prints to stderr. Order matters:

1. a new, empty network namespace when the kernel allows it (no interface is up, so nothing can
   be reached whatever the code does), then ctypes is dropped again;
2. resource limits, hard = soft so the code cannot raise them;
3. an audit hook (PEP 578) that stops the process, answering which operation it refused, at the
   first socket, process, native library, link, file outside the temporary directory (the
   standard library may be read), or write past ``max_writes`` files opened for writing (with
   the 1 MiB file-size limit, that bounds the disk a grader can fill). The hook holds its own
   references to every function it calls and checks paths with its own resolver, so patching
   ``os.path`` or ``builtins`` from the grader does not change what it allows; it is reachable
   from no frame the grader can walk;
4. the grader's code, called from a frame that holds nothing but its arguments.
"""

import sys


def isolate_network() -> bool:
    """Enter a new network namespace (CLONE_NEWNET; as a user also CLONE_NEWUSER, mapping the
    same uid and gid, so file access is unchanged). False where the kernel refuses."""
    import ctypes
    import os

    clone_newuser, clone_newnet = 0x10000000, 0x40000000
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if os.geteuid() == 0:
            return bool(libc.unshare(clone_newnet) == 0)
        uid, gid = os.geteuid(), os.getegid()
        if libc.unshare(clone_newuser | clone_newnet) != 0:
            return False
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        return True
    except (OSError, AttributeError):
        return False
    finally:  # the grader must not find ctypes already imported
        for module in [m for m in sys.modules if m.partition(".")[0] in ("ctypes", "_ctypes")]:
            del sys.modules[module]


def set_limits(limits: dict[str, list[int]]) -> None:
    import resource

    for name, (soft, hard) in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError, AttributeError):
            pass  # a limit this kernel does not have


def install_guard(workdir: str, stdlib: tuple[str, ...], answer_fd: int,
                  max_writes: int) -> None:
    """Install the audit hook. Everything it uses is bound here, once."""
    import posix

    lstat, readlink, getcwd = posix.lstat, posix.readlink, posix.getcwd
    write, exit_ = posix.write, posix._exit
    type_, str_, bytes_, int_, base_exception = type, str, bytes, int, BaseException
    write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND
    readable = (workdir, *stdlib)
    writable = (workdir,)
    native_suffixes = (".so", ".pyd", ".dylib")
    network = ("socket.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
               "nntplib.", "telnetlib.", "webbrowser.")
    processes = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.spawn",
                           "os.posix_spawn", "os.fork", "os.forkpty", "os.startfile",
                           "pty.spawn", "os.kill", "os.killpg"})
    native_modules = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend"})
    changes = frozenset({"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                         "os.truncate", "os.utime", "os.chflags", "os.setxattr",
                         "os.removexattr"})
    forbidden = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents",
                           "resource.setrlimit", "resource.prlimit", "sys.settrace",
                           "sys.setprofile", "sys._current_frames"})

    def refuse(kind: str, detail: str) -> None:
        hexed = detail.encode("utf-8", "replace").hex()
        write(answer_fd, ('{"error": "refused", "kind": "' + kind + '", "detail_hex": "'
                          + hexed + '"}').encode())
        exit_(0)

    def text(path: object) -> str:
        if type_(path) is bytes_:
            return path.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
        if type_(path) is str_:
            return path  # type: ignore[return-value]
        # CPython audits the converted path; anything else is unexpected, so refused.
        refuse("other", "passed a " + type_(path).__name__ + " as a path (use a str)")
        return ""

    def resolve(path: str) -> str:
        """Absolute, normalized, symlinks followed: what the kernel will open."""
        pending = (path if path.startswith("/") else getcwd() + "/" + path).split("/")
        parts: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            candidate = "/" + "/".join([*parts, part])
            try:
                is_link = (lstat(candidate).st_mode & 0o170000) == 0o120000
            except OSError:
                is_link = False
            if not is_link:
                parts.append(part)
                continue
            hops += 1
            if hops > 40:
                return candidate
            target = readlink(candidate)
            if target.startswith("/"):
                parts = []
            pending = target.split("/") + pending
        return "/" + "/".join(parts)

    def under(path: object, roots: tuple[str, ...]) -> bool:
        real = resolve(text(path))
        for root in roots:
            if real == root or real.startswith(root + "/"):
                return True
        return False

    opened_for_writing = [0]

    def written(path: object) -> None:
        opened_for_writing[0] += 1
        if opened_for_writing[0] > max_writes:
            refuse("write", f"opened files for writing more than {max_writes} times")
        if not under(path, writable):
            refuse("write", "wrote " + text(path))
        if text(path).endswith(native_suffixes):
            refuse("native", "wrote a native library " + text(path))

    def check(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return  # an already open descriptor
            if (mode and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) or (
                    (flags or 0) & write_flags):
                written(path)
            elif not under(path, readable):
                refuse("read", "read " + text(path))
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is not None and type_(args[0]) is not int_ \
                    and not under(args[0], readable):
                refuse("read", "listed " + text(args[0]))
        elif event == "os.chdir":
            if not under(args[0], writable):
                refuse("read", "changed directory to " + text(args[0]))
        elif event.startswith(network):
            refuse("network", event)
        elif event in processes:
            refuse("process", event)
        elif event == "import" and args[0] == "_posixsubprocess":
            refuse("process", "import subprocess")
        elif event.startswith(("ctypes.", "cffi.")) or (
                event == "import" and args[0].partition(".")[0] in native_modules):
            refuse("native", "import " + args[0] if event == "import" else event)
        elif event in changes:
            written(args[0])
        elif event == "os.rename":
            written(args[0])
            written(args[1])
        elif event in ("os.link", "os.symlink"):
            refuse("write", "made a link " + text(args[1]))
        elif event in forbidden:
            refuse("other", "called " + event)

    def hook(event: str, args: tuple) -> None:
        try:
            check(event, args)
        except base_exception:  # a check that cannot decide refuses
            refuse("other", "did something the sandbox could not check (" + event + ")")

    sys.addaudithook(hook)


def run(source: str, sample: object, item: object, answer_fd: int, isolated: bool) -> None:
    """Call the grader; answer its score or what went wrong."""
    import json
    import posix

    def send(message: dict) -> None:
        message["network_isolated"] = isolated
        posix.write(answer_fd, json.dumps(message).encode())

    namespace: dict = {"__name__": "grader"}
    try:
        exec(compile(source, "<grader>", "exec"), namespace)
        score = namespace["grade"](sample, item)
    except MemoryError:
        namespace.clear()
        send({"error": "memory"})
        return
    except BaseException as e:
        line, tb = None, e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<grader>":
                line = tb.tb_lineno
            tb = tb.tb_next
        send({"error": "exception", "type": type(e).__name__, "detail": str(e)[:500],
              "line": line})
        return
    if isinstance(score, bool) or not isinstance(score, int | float):
        send({"error": "result", "detail": repr(score)[:200]})
    else:
        send({"score": float(score)})


def main() -> None:
    import json
    import os

    request = json.loads(sys.stdin.buffer.read())
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the grader's prints go to stderr, never into the answer
    isolated = isolate_network()
    set_limits(request["limits"])
    stdlib = tuple(os.path.realpath(p) for p in sys.path if p)
    install_guard(os.path.realpath(os.getcwd()), stdlib, answer_fd, request["max_writes"])
    source, sample, item = request["source"], request["sample"], request["item"]
    del request
    run(source, sample, item, answer_fd, isolated)


if __name__ == "__main__":
    main()
