"""A small Chrome DevTools Protocol driver for the page tests: a real headless chromium.

    browser = await Browser.launch(find_chromium())
    page = await browser.new_page()
    await page.goto(url)
    await page.type_text("#question", "What is the refund policy?")
    await page.click("#ask")
    await page.wait_for("document.querySelector('.answer-text') !== null")
    await browser.close()          # always: closes the browser, kills it if it hangs

One websocket to the browser; each tab is a flattened CDP session on it (`sessionId` in
every message), so no second connection per tab is needed.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from typing import Any

import aiohttp

DEVTOOLS_URL = re.compile(r"DevTools listening on (ws://\S+)")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--remote-debugging-port=0", "--window-size=1280,900",
)


class BrowserError(Exception):
    """The browser failed to start, or a CDP command or page script failed."""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


class Cdp:
    """Commands and their replies over one DevTools websocket; events go to listeners."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.listeners: dict[str, list] = collections.defaultdict(list)   # sessionId → callbacks
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict | None = None, session_id: str = "",
                   timeout: float = 10.0) -> dict:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        reply = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = reply
        await self.ws.send_str(json.dumps(message))
        try:
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._pending.pop(message["id"], None)

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            reply = self._pending.get(message.get("id", -1))
            if reply is not None and not reply.done():
                if "error" in message:
                    reply.set_exception(BrowserError(f"CDP: {message['error']}"))
                else:
                    reply.set_result(message.get("result", {}))
            for listener in self.listeners.get(message.get("sessionId", ""), []):
                listener(message)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(BrowserError("the browser closed the DevTools connection"))

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Browser:
    """One headless chromium process with its own throwaway profile directory."""

    def __init__(self, process: asyncio.subprocess.Process, profile: str, cdp: Cdp,
                 stderr_tail: collections.deque, drain: asyncio.Task) -> None:
        self.process, self.profile, self.cdp = process, profile, cdp
        self.stderr_tail, self._drain = stderr_tail, drain

    @classmethod
    async def launch(cls, binary: str, *, timeout: float = 20.0,
                     extra_flags: tuple[str, ...] = ()) -> Browser:
        profile = tempfile.mkdtemp(prefix="pw-chromium-")
        process = await asyncio.create_subprocess_exec(
            binary, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)   # its own process group
        tail: collections.deque = collections.deque(maxlen=40)
        try:
            url = await asyncio.wait_for(_devtools_url(process, tail), timeout)
            http = aiohttp.ClientSession()
            ws = await http.ws_connect(url, max_msg_size=0)
        except BaseException:
            await _stop(process, grace=0.0)
            shutil.rmtree(profile, ignore_errors=True)
            raise
        # Keep reading stderr: a full pipe would block chromium.
        drain = asyncio.create_task(_keep_tail(process, tail))
        return cls(process, profile, Cdp(http, ws), tail, drain)

    async def new_page(self) -> Page:
        target = await self.cdp.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.cdp.send("Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True})
        page = Page(self.cdp, attached["sessionId"], target["targetId"])
        self.cdp.listeners[page.session_id].append(page.on_event)
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.cdp.send("Browser.close", timeout=3.0)
        with contextlib.suppress(Exception):
            await self.cdp.close()
        await _stop(self.process)
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, run script, wait for the DOM, type, click, pick files."""

    def __init__(self, cdp: Cdp, session_id: str, target_id: str) -> None:
        self.cdp, self.session_id, self.target_id = cdp, session_id, target_id
        self.console: list[str] = []            # console messages and uncaught exceptions

    def on_event(self, message: dict) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"console.{params['type']}: {args}")
        elif message.get("method") == "Runtime.exceptionThrown":
            self.console.append(f"uncaught: {_describe(params['exceptionDetails'])}")

    async def send(self, method: str, params: dict | None = None) -> dict:
        return await self.cdp.send(method, params, session_id=self.session_id)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (a promise is awaited); page errors raise."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {_describe(result['exceptionDetails'])}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout: float = 10.0) -> Any:
        """Poll a JS condition until it is truthy; the failure names it and the console."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(condition)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for: {condition}\n"
                                     f"page console: {self.console[-10:]}")
            await asyncio.sleep(0.05)

    async def text(self, selector: str) -> str | None:
        return await self.evaluate(
            f"document.querySelector({json.dumps(selector)})?.textContent ?? null")

    async def type_text(self, selector: str, text: str) -> None:
        """Focus the field and insert text the way a keyboard does (input events fire)."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", {"text": text})

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (it must be visible)."""
        box = await self.evaluate(f"""(() => {{
            const node = document.querySelector({json.dumps(selector)});
            if (!node) return null;
            node.scrollIntoView({{block: "center"}});
            const r = node.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
        }})()""")
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {
                "type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1})

    async def set_files(self, selector: str, paths: list[str]) -> None:
        document = await self.send("DOM.getDocument", {"depth": 0})
        node = await self.send("DOM.querySelector",
                               {"nodeId": document["root"]["nodeId"], "selector": selector})
        if not node.get("nodeId"):
            raise BrowserError(f"nothing matches {selector!r}")
        await self.send("DOM.setFileInputFiles", {"files": paths, "nodeId": node["nodeId"]})

    async def close(self) -> None:
        self.cdp.listeners.pop(self.session_id, None)
        with contextlib.suppress(Exception):
            await self.cdp.send("Target.closeTarget", {"targetId": self.target_id})


def _describe(details: dict) -> str:
    """The readable part of CDP exceptionDetails (the JS error's message and stack)."""
    return details.get("exception", {}).get("description") or details.get("text", str(details))


async def _devtools_url(process: asyncio.subprocess.Process, tail: collections.deque) -> str:
    while line := await process.stderr.readline():
        text = line.decode(errors="replace").rstrip()
        tail.append(text)
        if match := DEVTOOLS_URL.search(text):
            return match.group(1)
    raise BrowserError("chromium exited before DevTools listened:\n" + "\n".join(tail))


async def _keep_tail(process: asyncio.subprocess.Process, tail: collections.deque) -> None:
    while line := await process.stderr.readline():
        tail.append(line.decode(errors="replace").rstrip())


async def _stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """Give chromium `grace` seconds to exit on its own, then kill its process group (the
    renderer and GPU helpers too, which it started in the group launch() gave it)."""
    if process.returncode is None and grace > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
