"""Where a sweep's study lives: Optuna (imported only here and when a sweep runs), the storage
(a journal file, or a database URL shared by several machines), and DIR/study.json, which binds
a sweep folder to one study.

A storage URL is read once, defensively, by parse_storage before anything is opened: a URL a
user typed gives a one-line error or a form fit to print (the password hidden), never a traceback
from the code that hides the password.
"""
import importlib.util
import json
import os
import re
import time
import urllib.parse
import warnings

from .. import atomic
from ..errors import CharrnnError

INSTALL = "charrnn tune needs Optuna: pip install 'charrnn[tune]'"
STUDY, JOURNAL = "study.json", "journal.log"
DEFAULT_STUDY = "charrnn"
HEARTBEAT, GRACE = 60, 180  # seconds: an RDB trial silent this long belongs to a dead worker
OPEN_ATTEMPTS = 4


def optuna():
    """The optuna module, or a CharrnnError saying how to install it."""
    try:
        import optuna as module
    except ImportError:
        raise CharrnnError(INSTALL) from None
    return module


def is_url(storage):
    return storage is not None and "://" in storage


def parse_storage(storage):
    """Check a --storage value -> its display form (a URL without its password, or the path).

    A URL must split into scheme, host and port as SQLAlchemy will read it: a port that is not a
    number from 0 to 65535, an unclosed IPv6 bracket or an empty scheme is a CharrnnError naming
    the part, with the password already hidden.
    """
    if not isinstance(storage, str) or not storage:
        raise CharrnnError(f"storage must be a URL or a file path, got {storage!r}")
    if not is_url(storage):
        return storage
    shown = _hide_password(storage)
    try:
        parts = urllib.parse.urlsplit(storage)
        parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as e:
        raise CharrnnError(f"storage URL {shown} cannot be read: {e}") from None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
        raise CharrnnError(f"storage URL {shown} has no valid scheme before '://' (e.g. "
                           f"postgresql://user@host/db)")
    return shown


def _hide_password(url):
    """url with the password of its user:password@ part replaced, by text alone (it must work on
    a URL that urllib cannot split)."""
    scheme, sep, rest = url.partition("://")
    head = re.split(r"[?#]", rest, maxsplit=1)[0]  # the user part ends before any query
    userinfo, at, _ = head.rpartition("@")  # rpartition: a password may hold '@' or '/'
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}@{rest[len(userinfo) + 1:]}"


def _driver(url):
    """postgresql://... names SQLAlchemy's default driver, psycopg2; the tune extra installs
    psycopg (3), so use that one when psycopg2 is absent."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
            return "postgresql+psycopg" + sep + rest
    return url


def open_storage(optuna, out, storage):
    """An Optuna storage: a URL (e.g. postgresql://...) is an RDB with heartbeats, so a worker
    that dies leaves no trial running for ever; anything else is a journal file, by default
    DIR/journal.log (Optuna recommends it over SQLite for concurrent workers)."""
    if is_url(storage):
        shown = parse_storage(storage)
        for attempt in range(OPEN_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(_driver(storage), heartbeat_interval=HEARTBEAT,
                                                  grace_period=GRACE)
            except ImportError as e:
                raise CharrnnError(f"cannot open storage {shown}: {e} (pip install "
                                   f"'charrnn[tune]' installs psycopg for PostgreSQL)") from None
            except Exception as e:  # the driver's errors: refused connection, bad password ...
                # ... or another worker creating Optuna's tables in a new database at the same
                # moment (a duplicate key in PostgreSQL's catalog): the tables exist on a retry
                if attempt + 1 == OPEN_ATTEMPTS:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    raise CharrnnError(f"cannot open storage {shown}: {first}") from None
                time.sleep(0.5 * (attempt + 1))
    path = storage or os.path.join(out, JOURNAL)
    journal = optuna.storages.journal
    return optuna.storages.JournalStorage(journal.JournalFileBackend(path))


def _read_binding(out):
    path = os.path.join(out, STUDY)
    try:
        with open(path, encoding="utf-8") as f:
            have = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None
    if not isinstance(have, dict):
        raise CharrnnError(f"cannot read {path}: it is not a JSON object")
    return have


def bind_folder(out, study, storage, write=False):
    """DIR/study.json records which study DIR's trial folders belong to: refuse another one,
    whose trial numbers would collide with them. write: record it (once the study is open)."""
    want = {"study": study, "storage": parse_storage(storage) if storage else JOURNAL}
    have = _read_binding(out)
    if have is None:
        if write:
            atomic.write_text_atomic(os.path.join(out, STUDY), json.dumps(want, indent=1) + "\n")
        return
    if have != want:
        raise CharrnnError(f"{out} holds the trials of study {have.get('study')!r} in "
                           f"{have.get('storage')}; run it with the same --study and --storage, "
                           f"or choose another --out")


def recorded(out, study, storage):
    """--study and --storage, or else what DIR/study.json recorded."""
    have = _read_binding(out) or {}
    if storage is None and have.get("storage") not in (None, JOURNAL):
        storage = have["storage"]
    if storage is None and not os.path.exists(os.path.join(out, JOURNAL)):
        raise CharrnnError(f"{out} holds no sweep ({STUDY} and {JOURNAL} are missing); give "
                           f"the sweep's folder, or --study and --storage")
    return study or have.get("study") or DEFAULT_STUDY, storage


class quiet:
    """Optuna's own INFO lines and tracebacks of caught trials off (charrnn logs its own), its
    experimental warnings too; both put back on leaving."""

    def __init__(self, optuna):
        self.optuna = optuna

    def __enter__(self):
        self.level = self.optuna.logging.get_verbosity()
        self.optuna.logging.set_verbosity(self.optuna.logging.ERROR)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
        return self

    def __exit__(self, *exc):
        self.warnings.__exit__(*exc)
        self.optuna.logging.set_verbosity(self.level)
        return False
