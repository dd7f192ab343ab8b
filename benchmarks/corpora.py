"""Build the benchmark corpora (prose, verse, source code, a big vocabulary, lists of names and
words; 0.2 MB to 100 MB) from the Python standard library and a few Debian and PyPI packages,
each as one UTF-8 file in a folder, with a manifest of their hashes. Nothing is downloaded here:
what a corpus needs is installed first (the script names the command and stops when it is not).

    python benchmarks/corpora.py                       # every corpus into corpora/
    python benchmarks/corpora.py OUT --only code-1m pydoc
    python benchmarks/corpora.py --list                # what each needs, build nothing

The same installed versions give the same files (same sources, same order, same cuts): each
corpus's SHA-256 is printed and written to OUT/manifest.json with its size, vocabulary and the
versions it came from, so two machines can check that they train on the same text. The corpora
are described in benchmarks/RESULTS.md ("The benchmark corpora").
"""
import argparse
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import atomic  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "corpora")
SEPARATOR = "\x1c"  # after each file of a many-file corpus, as charrnn reads a folder
MB = 1_000_000
FORTUNES = "/usr/share/games/fortunes"
PYTHON_DOCS = "/usr/share/doc/python3.11/html/_sources"
LINUX_TARBALL = "/usr/src/linux-source-6.1.tar.xz"
ANSI_COLOUR = re.compile("\x1b\\[[0-9;]*m")  # fortunes-zh colours its titles and authors


@dataclasses.dataclass
class Corpus:
    name: str
    kind: str
    source: str
    licence: str
    build: Callable[[], str]
    debian: tuple = ()  # Debian packages it reads
    pypi: Optional[str] = None  # the PyPI distribution it reads
    python: bool = False  # whether it depends on this Python's version (the standard library)


def utf8_files(paths, limit=None):
    """The text of the files at paths in the given order, each followed by SEPARATOR; files that
    are not UTF-8 or hold a NUL are left out (charrnn would refuse or skip them). Stops before
    the file that would take the text past `limit` bytes (None: no limit)."""
    parts, size = [], 0
    for path in paths:
        with open(path, "rb") as f:
            raw = f.read()
        text = _text(raw)
        if text is None:
            continue
        if limit is not None and size + len(raw) + 1 > limit:
            break
        parts.append(text + SEPARATOR)
        size += len(raw) + 1
    return "".join(parts)


def _text(raw):
    """raw bytes -> str, or None when they are not UTF-8 text."""
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def stdlib_sources():
    """Every .py file of this Python's standard library (site-packages left out), sorted by path
    relative to it."""
    top = sysconfig.get_paths()["stdlib"]
    found = []
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("site-packages", "__pycache__")]
        found += [os.path.relpath(os.path.join(folder, f), top) for f in files
                  if f.endswith(".py")]
    return [os.path.join(top, p) for p in sorted(found, key=lambda p: p.split(os.sep))]


def pydoc_topics():
    """The language reference's topics as the standard library holds them for help(), sorted by
    name, each a plain-text document."""
    from pydoc_data.topics import topics
    return "".join(topics[k] + SEPARATOR for k in sorted(topics))


def python_docs():
    top = PYTHON_DOCS
    found = [os.path.relpath(os.path.join(d, f), top) for d, _, files in os.walk(top)
             for f in files if f.endswith(".rst.txt")]
    return utf8_files(os.path.join(top, p) for p in sorted(found, key=lambda p: p.split(os.sep)))


def fortune_file(*names):
    """fortune files as they are (entries between % lines), colour codes removed."""
    parts = []
    for name in names:
        with open(os.path.join(FORTUNES, name), encoding="utf-8") as f:
            parts.append(ANSI_COLOUR.sub("", f.read()))
    return "".join(parts)


def census_names():
    """US census first names (female, then male) and last names from the `names` package, each
    once, capitalised, in the order of their SHA-256 (so the last tenth, charrnn's validation
    split, is a sample of all of them and not the rarest surnames)."""
    folder = os.path.dirname(importlib.util.find_spec("names").origin)
    seen = set()
    for name in ("dist.female.first", "dist.male.first", "dist.all.last"):
        with open(os.path.join(folder, name), encoding="ascii") as f:
            seen.update(line.split()[0].capitalize() for line in f if line.strip())
    ordered = sorted(seen, key=lambda n: hashlib.sha256(n.encode()).digest())
    return "\n".join(ordered) + "\n"


def dictionary_words():
    with open("/usr/share/dict/american-english", encoding="utf-8") as f:
        return f.read()


def linux_sources(limit=100 * MB):
    """The .c and .h files of the Linux source tarball in the tarball's own order, up to `limit`
    bytes (read as a stream: the 1.3 GB tree is never unpacked)."""
    def files():
        with tarfile.open(LINUX_TARBALL, "r|xz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith((".c", ".h")):
                    yield tar.extractfile(member).read()
    parts, size = [], 0
    for raw in files():
        text = _text(raw)
        if text is None:
            continue
        if size + len(raw) + 1 > limit:
            break
        parts.append(text + SEPARATOR)
        size += len(raw) + 1
    return "".join(parts)


CORPORA = [
    Corpus("names", "list", "US census 1990 first and last names, from the PyPI package names "
           "0.3.0, one a line, in SHA-256 order", "MIT (the package); the census lists are "
           "public domain", census_names, pypi="names"),
    Corpus("words", "list", "the American English word list of Debian's wamerican "
           "(/usr/share/dict/american-english), one a line, alphabetical",
           "SCOWL's permissive licence (free to use, copy, modify and sell)", dictionary_words,
           debian=("wamerican",)),
    Corpus("verse", "verse", "the songs-poems fortune file of Debian's fortunes (English verse, "
           "entries between % lines)", "BSD, as Debian's fortune-mod distributes it",
           lambda: fortune_file("songs-poems"), debian=("fortunes",)),
    Corpus("pydoc", "prose", "the Python language reference's topics in plain text, as the "
           "standard library holds them for help() (pydoc_data.topics)", "PSF License",
           pydoc_topics, python=True),
    Corpus("prose", "prose", "the Python 3.11 documentation's reStructuredText sources, every "
           ".rst.txt under /usr/share/doc/python3.11/html/_sources, sorted by path",
           "PSF License", python_docs, debian=("python3.11-doc",)),
    Corpus("code-1m", "code", "the first 1 MB of `code` (whole files)", "PSF License",
           lambda: utf8_files(stdlib_sources(), limit=1 * MB), python=True),
    Corpus("code", "code", "every .py file of this Python's standard library (tests included, "
           "site-packages not), sorted by path, UTF-8 ones only", "PSF License",
           lambda: utf8_files(stdlib_sources()), python=True),
    Corpus("cjk", "big vocabulary", "Debian's fortunes-zh: Chinese sayings (chinese), 300 Tang "
           "poems (tang300) and 100 Song lyrics (song100), in that order, colour codes removed",
           "GPL-3+", lambda: fortune_file("chinese", "tang300", "song100"),
           debian=("fortunes-zh",)),
    Corpus("c-100m", "code", "the .c and .h files of Debian's linux-source-6.1 tarball in its "
           "own order, whole files up to 100 MB (C, one project)", "GPL-2.0 (the kernel; a few "
           "files dual-licensed)", linux_sources, debian=("linux-source-6.1",)),
]
BY_NAME = {c.name: c for c in CORPORA}


def debian_version(package):
    """The installed version of a Debian package, or None when it is not installed."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", package],
                          capture_output=True, text=True)
    status, _, version = done.stdout.partition(" ")
    return version if done.returncode == 0 and status == "installed" else None


def pypi_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(corpus):
    """What the corpus's text depends on -> its installed version (None: not installed)."""
    found = {f"debian:{p}": debian_version(p) for p in corpus.debian}
    if corpus.pypi:
        found[f"pypi:{corpus.pypi}"] = pypi_version(corpus.pypi)
    if corpus.python:
        found["python"] = ".".join(map(str, sys.version_info[:3]))
    return found


def missing_line(chosen):
    """One line naming the install commands that the chosen corpora still need, or None."""
    apt, pip = [], []
    for c in chosen:
        for key, version in versions(c).items():
            if version is None:
                kind, _, name = key.partition(":")
                (apt if kind == "debian" else pip).append(name)
    if not apt and not pip:
        return None
    needs = []
    if apt:
        needs.append("apt-get install " + " ".join(sorted(set(apt))))
    if pip:
        needs.append("pip install " + " ".join(sorted(set(pip))))
    return (f"Error: the corpora need {'; '.join(needs)} (or build fewer with --only; --list "
            f"says what each needs)")


def build(corpus, out):
    """Write OUT/NAME.txt whole or not at all; return its manifest entry."""
    text = corpus.build()
    raw = text.encode("utf-8")
    atomic.write_atomic(os.path.join(out, corpus.name + ".txt"), lambda f: f.write(raw))
    return {"file": corpus.name + ".txt", "kind": corpus.kind, "source": corpus.source,
            "licence": corpus.licence, "bytes": len(raw), "chars": len(text),
            "vocab": len(set(text)), "sha256": hashlib.sha256(raw).hexdigest(),
            "versions": versions(corpus)}


def write_manifest(out, entries):
    """OUT/manifest.json: the entries of this build over those of earlier builds in OUT."""
    path = os.path.join(out, "manifest.json")
    known = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                known = json.load(f).get("corpora", {})
        except (OSError, ValueError, AttributeError):
            known = {}  # a damaged manifest is rewritten from what is built now
    known.update(entries)
    manifest = {"corpora": {k: known[k] for k in sorted(known)}}
    atomic.write_atomic(path, lambda f: f.write(
        (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT,
                    help="folder to write into  [default: corpora/ at the top of the repo]")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="build these corpora only")
    ap.add_argument("--list", action="store_true", help="list the corpora and what each needs")
    args = ap.parse_args(argv)
    if args.list:
        for c in CORPORA:
            needs = ", ".join(f"{k} {v or '(not installed)'}" for k, v in versions(c).items())
            print(f"{c.name:8} {c.kind:15} needs {needs or 'nothing'}\n         {c.source}")
        return 0
    unknown = sorted(set(args.only or ()) - set(BY_NAME))
    if unknown:
        print(f"Error: no corpus named {', '.join(unknown)} (there are {', '.join(BY_NAME)})",
              file=sys.stderr)
        return 1
    chosen = [BY_NAME[n] for n in args.only] if args.only else CORPORA
    line = missing_line(chosen)
    if line:
        print(line, file=sys.stderr)
        return 1
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        print(f"Error: cannot make the folder {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    entries = {}
    for c in chosen:
        entries[c.name] = e = build(c, args.out)
        print(f"{c.name:8} {e['bytes'] / MB:8.2f} MB {e['chars']:>12,} chars  "
              f"vocab {e['vocab']:>6,}  sha256 {e['sha256']}", flush=True)
    write_manifest(args.out, entries)
    print(f"wrote {len(entries)} corpora and manifest.json to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
