"""The benchmark's baseline: a Bolt app whose `/incident` listener only acks, served like the bot.

Same Bolt settings as the bot (process_before_response), same server (waitress), same thread
count, its own process. Configured by SLACK_API_URL, SLACK_SIGNING_SECRET, PORT, HTTP_THREADS.
"""

import os

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress import serve

app = App(
    client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    process_before_response=True,
)


@app.command("/incident")
def only_ack(ack):  # type: ignore[no-untyped-def]
    ack()


handler = SlackRequestHandler(app)


def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']
    return handler(environ, start_response)


serve(wsgi, host="127.0.0.1", port=int(os.environ["PORT"]), threads=int(os.environ.get("HTTP_THREADS", "32")))
