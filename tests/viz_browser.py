"""A headless Chromium driven over the DevTools protocol on a pipe, with the standard library only.

Chromium started with --remote-debugging-pipe reads protocol commands from its file descriptor 3
and writes replies and events to 4, each message JSON ended by a NUL byte. Browser opens one
page, records every console message, uncaught exception and network request the page makes, and
offers the few commands the viz tests need: load a file, evaluate JavaScript, move the mouse,
press a key, take a screenshot.
"""
import base64
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    pass


class Browser:
    """with Browser() as b: b.open(path); b.eval("1 + 1") -> 2.

    b.console: (level, text) of every console message and uncaught exception;
    b.requests: the URL of every network request after the page itself.
    """

    def __init__(self, width=1280, height=900, timeout=30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.console, self.requests = [], []
        self._next_id, self._replies, self._events = 0, {}, []
        self._cond = threading.Condition()
        self._closed = False

    def __enter__(self):
        self._profile = tempfile.mkdtemp(prefix="viz-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # the child's ends, moved above 4 so that putting them at 3 and 4 cannot clobber them
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome_r, from_chrome_w)]
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def fds_3_and_4():
            os.dup2(ends[0], 3)  # dup2 leaves the copies open across exec
            os.dup2(ends[1], 4)

        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds_3_and_4, close_fds=False)
        for fd in ends:
            os.close(fd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._call("Target.attachToTarget",
                                       {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Network", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                       "mobile": False})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            os.close(self._to_chrome)
        except OSError:
            pass
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    # ---- the protocol ----------------------------------------------------------------------

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._dispatch(json.loads(m))
        os.close(self._from_chrome)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append((params["type"], text))
        elif method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.console.append(("exception", d.get("exception", {}).get("description",
                                                                         d.get("text"))))
        elif method == "Log.entryAdded":
            self.console.append((params["entry"]["level"], params["entry"]["text"]))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        with self._cond:
            if "id" in msg:
                self._replies[msg["id"]] = msg
            else:
                self._events.append(msg)
            self._cond.notify_all()

    def _call(self, method, params=None, session=None):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no reply to {method} (Chromium exited or hung)")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def send(self, method, params=None):
        """A command to the page; returns its result."""
        return self._call(method, params, self._session)

    def wait_event(self, method, since=0):
        """The first event named method after the first `since` events; waits for it."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                for e in self._events[since:]:
                    if e.get("method") == method:
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no {method} event")
                self._cond.wait(left)

    # ---- what the tests use ----------------------------------------------------------------

    def open(self, path, ready="window.charrnnViz.ready"):
        """Load a file and wait for its load event, then for the promise `ready` to settle."""
        url = pathlib.Path(path).resolve().as_uri()
        with self._cond:
            since = len(self._events)
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", since)
        # the page's own load is the one request expected: count only those after it
        self.requests = [u for u in self.requests if u not in (url, "about:blank")]
        if ready:
            self.eval(ready)

    def eval(self, expression):
        """Evaluate JavaScript in the page (awaiting a promise) and return its value as JSON."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise BrowserError(d.get("exception", {}).get("description", d.get("text")))
        return result["result"].get("value")

    def hover(self, x, y):
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def key(self, key, code, keycode):
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code,
                                                 "windowsVirtualKeyCode": keycode})

    def screenshot(self, path, full_page=True):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        pathlib.Path(path).write_bytes(base64.b64decode(data))
