"""One local OpenAI-compatible server for the tests of everything that asks an LLM (the client, InsCL's
tagger, KPIG's extractor and rewriter). Loopback only, stopped by the fixture that made it."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class FakeOpenAI:
    """Answers each POST to .../chat/completions with the next of `replies` (an int is an HTTP status, a
    string a completion; the last one repeats), or with `answer(body)` when given. Every request is kept
    in `requests` as {"path", "auth", "body"}."""

    def __init__(self, replies=(), answer: Callable[[dict], "int | str"] | None = None):
        self.replies, self.answer, self.requests = list(replies), answer, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                reply = outer.next_reply(body)
                if isinstance(reply, int):
                    self.send_response(reply)
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def next_reply(self, body: dict) -> "int | str":
        if self.answer is not None:
            return self.answer(body)
        if not self.replies:
            raise AssertionError("the fake LLM was asked more often than the test scripted")
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
