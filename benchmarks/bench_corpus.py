"""Corpus encoding speed and the memory of training on a large corpus.

Builds a real-text corpus on the fly from this Python's own standard library `.py` sources (the
files that are valid UTF-8), repeated until it reaches --size-mb, then runs two child processes
under `/usr/bin/time -v` (GNU time), which reports each one's peak resident memory:

1. encoding: both passes of charrnn.corpus.open_corpus into an empty cache folder, timed; the
   throughput is corpus bytes / wall time of the two passes together.
2. training: `python -m charrnn train CORPUS --time-limit 60 ...` with the default model, reusing
   that cache, so its ids are read through np.memmap.

    python benchmarks/bench_corpus.py                 # 200 MB, a 60-second run (a few minutes)
    python benchmarks/bench_corpus.py --size-mb 20 --seconds 10

Targets: encoding at 50 MB/s or better, peak RSS of the training run under 300 MB.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENCODE = """
import json, sys, time
sys.path.insert(0, {root!r})
from charrnn import corpus
t0 = time.perf_counter()
sc = corpus.scan([{path!r}])
t1 = time.perf_counter()
c = corpus.open_corpus([{path!r}], cache_dir={cache!r}, sc=sc)
t2 = time.perf_counter()
print(json.dumps({{"scan_s": t1 - t0, "ids_s": t2 - t1, "chars": len(c), "vocab": len(c.vocab)}}))
"""


def stdlib_sources():
    """The bytes of every standard-library .py file that is valid UTF-8, in sorted path order."""
    lib = sysconfig.get_paths()["stdlib"]
    paths = []
    for root, dirs, names in os.walk(lib):
        dirs[:] = [d for d in dirs if d not in ("site-packages", "__pycache__")]
        paths += [os.path.join(root, n) for n in names if n.endswith(".py")]
    for path in sorted(paths):
        with open(path, "rb") as f:
            raw = f.read()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a few test files are deliberately in other encodings
        if b"\x00" not in raw:
            yield raw


def build_corpus(path, size_bytes):
    """Write the standard library's sources, repeated, to path until it holds size_bytes."""
    one_copy = b"".join(stdlib_sources())
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            cut = min(size_bytes - written, len(one_copy))
            # end on a character boundary: a cut multi-byte character would be invalid UTF-8
            while cut < len(one_copy) and (one_copy[cut] & 0xC0) == 0x80:
                cut -= 1
            f.write(one_copy[:cut])
            written += cut
    return len(one_copy)


def run_child(cmd, env=None):
    """Run cmd under `/usr/bin/time -v`; -> (stdout, wall seconds, peak RSS in MB).

    GNU time reports the command's own peak. (ru_maxrss of a child read with os.wait4 would
    start from this process's resident size, which a forked child inherits across exec.)
    """
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}): {shlex.join(cmd)}\n{err}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    return proc.stdout.decode(), wall, peak_kb / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=200.0, help="corpus size in MB (10^6 bytes)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the training run")
    ap.add_argument("--workdir", default=None,
                    help="where to build the corpus and keep it (default: a temp dir, removed)")
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench-corpus-")
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "stdlib.py.txt")
    cache = os.path.join(work, "cache")
    copy_bytes = build_corpus(path, int(args.size_mb * 1e6))
    size = os.path.getsize(path)
    print(f"corpus: {path}, {size / 1e6:.1f} MB ({copy_bytes / 1e6:.1f} MB of standard-library "
          f"sources from {sys.version.split()[0]}, repeated)")

    encode_cmd = [sys.executable, "-c", ENCODE.format(root=ROOT, path=path, cache=cache)]
    out, _, enc_rss = run_child(encode_cmd)
    enc = json.loads(out.strip().splitlines()[-1])
    total = enc["scan_s"] + enc["ids_s"]
    print(f"encoding: {size / 1e6 / total:.1f} MB/s over both passes ({total:.1f} s: vocabulary "
          f"pass {size / 1e6 / enc['scan_s']:.1f} MB/s, id pass {size / 1e6 / enc['ids_s']:.1f} "
          f"MB/s); {enc['chars']:,} characters, vocabulary of {enc['vocab']}; "
          f"peak RSS of the encoding process {enc_rss:.0f} MB")

    train_cmd = [sys.executable, "-m", "charrnn", "train", path, "--cache-dir", cache,
                 "--out", os.path.join(work, "run"), "--time-limit", str(args.seconds),
                 "--steps", "1000000"]
    print("training command: /usr/bin/time -v", shlex.join(train_cmd))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    _, wall, train_rss = run_child(train_cmd, env)
    with open(os.path.join(work, "run", "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
    print(f"training: {wall:.0f} s wall, {last['step']} steps, {last['chars']:,} characters; "
          f"peak RSS {train_rss:.0f} MB (target < 300 MB)")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
