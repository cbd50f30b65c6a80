"""Where a command writes: its run folder (the Hydra output dir) and the cache (``SDEGEN_CACHE``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserError


def run_dir(cfg=None) -> Path:
    """The run folder: Hydra's output dir inside a Hydra run, else ``cfg.output_dir`` (notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    out = (cfg or {}).get("output_dir") if cfg is not None else None
    if not out:
        raise UserError("no run folder: call the command through `sdegen` or set output_dir=PATH")
    return Path(str(out))


def cache_dir(sub: str = "") -> Path:
    """``$SDEGEN_CACHE`` (default ``$XDG_CACHE_HOME/sdegen`` or ``~/.cache/sdegen``), or a subfolder of it."""
    root = os.environ.get("SDEGEN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdegen"
    return Path(root).expanduser() / sub if sub else Path(root).expanduser()


#: what Hydra writes into a run folder before the command starts
HYDRA_FILES = {".hydra", "cli.log"}


def remove_if_untouched(folder) -> bool:
    """Remove a run folder that holds only what Hydra wrote before the command started (a command
    that failed validation leaves nothing behind).  Returns True when it was removed."""
    folder = Path(folder)
    if not folder.is_dir() or any(p.name not in HYDRA_FILES for p in folder.iterdir()):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


# --- one run per folder -------------------------------------------------------------------------------
#: the lock file of a run folder: ``PID HOST COMMAND`` of the command writing into it
LOCK = ".sdegen.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(path: Path) -> tuple[int, str, str] | None:
    """``(pid, host, command)`` written in a lock file, or None when it is unreadable or empty."""
    try:
        pid, host, command = path.read_text().split(" ", 2)
        return int(pid), host, command.strip()
    except (OSError, ValueError):
        return None


def _is_worker() -> bool:
    """A DDP rank other than 0 (Lightning relaunches the command once per rank; rank 0 holds the lock)."""
    return any(os.environ.get(key, "0") not in ("", "0") for key in ("LOCAL_RANK", "RANK", "NODE_RANK"))


class RunLock:
    """The lock of a run folder, held while a command writes into it (``with RunLock(folder, "train"):``).

    Taking it creates ``folder/.sdegen.lock`` with O_EXCL.  A lock whose process is alive on this host is a
    ``UserError`` (one line naming the folder, the PID and its command), except for the process's own DDP
    ranks (ranks other than 0 take no lock; a child of the holder passes); a lock whose PID is dead is taken
    over.  Leaving the block (or the process exiting) removes it."""

    def __init__(self, folder, command: str):
        self.folder, self.command = Path(folder), command
        self.path = self.folder / LOCK
        self.held = False

    def acquire(self) -> RunLock:
        if _is_worker():
            return self
        import socket

        host = socket.gethostname()
        me = f"{os.getpid()} {host} {self.command}\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if holder is not None and holder[1] == host and holder[0] in (os.getpid(), os.getppid()):
                    return self  # this process (a nested command) or its DDP parent holds it
                if holder is not None and (holder[1] != host or _alive(holder[0])):
                    raise UserError(
                        f"{self.folder} is in use by `sdegen {holder[2]}` (PID {holder[0]} on "
                        f"{holder[1]}); wait for it to finish or choose another hydra.run.dir "
                        f"(delete {self.path} if no such command runs)"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            import atexit

            atexit.register(self.release)
            return self
        raise UserError(f"{self.folder}: cannot take its lock {LOCK} (another command keeps replacing it)")

    def release(self) -> None:
        if self.held:
            holder = _holder(self.path)
            if holder is None or holder[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def finished_run(folder) -> str | None:
    """What shows that ``folder`` holds a run of ``sdegen train`` (its ``config.yaml`` or checkpoints), or None."""
    folder = Path(folder)
    if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").glob("*.ckpt")):
        return "checkpoints/"
    if (folder / "config.yaml").is_file():
        return "config.yaml"
    return None


def claim(folder, command: str, resume=None) -> RunLock:
    """The lock of ``folder`` for ``sdegen <command>`` (use as ``with claim(...):``); for ``train``, a folder
    that already holds a run (``finished_run``) is refused unless ``resume`` names that run: a new run never
    mixes its checkpoints, metrics and config with another's.  DDP ranks other than 0 check nothing."""
    folder = Path(folder)
    lock = RunLock(folder, command)
    if _is_worker():
        return lock
    lock.acquire()
    found = finished_run(folder) if command == "train" else None
    if found is not None:
        named = Path(str(resume)).expanduser().resolve() if resume else None
        if named is None or folder.resolve() not in (named, *named.parents):
            lock.release()
            raise UserError(
                f"{folder} already holds a run ({found}); choose another hydra.run.dir, or continue "
                f"that run with resume={folder}"
            )
    return lock


def check_free(folder, command: str, resume=None) -> None:
    """The ``UserError`` that ``claim`` would raise for ``folder``, without keeping the lock: a check to run
    before anything (Hydra's ``.hydra/``, ``cli.log``) is written into a given ``hydra.run.dir``."""
    folder = Path(str(folder)).expanduser()
    if folder.is_dir():
        claim(folder, command, resume).release()
