"""The sandbox's external file upload speaks Slack's three-step protocol to the real slack_sdk client."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.constants import DEFAULT_SCOPES

TOKEN = "xoxb-sandbox"


def client(sandbox: SlackSandbox) -> WebClient:
    return WebClient(token=TOKEN, base_url=sandbox.api_url)


def test_files_upload_v2_is_three_calls_and_shares_the_file_in_a_thread(sandbox):
    web = client(sandbox)
    parent = web.chat_postMessage(channel="C0INCIDENT", text="INC-1 announcement")
    response = web.files_upload_v2(
        channel="C0INCIDENT",
        thread_ts=parent["ts"],
        filename="INC-1-postmortem.md",
        title="INC-1 post-mortem draft",
        content="# Post-mortem\n\nüñí | ok\n".encode(),
        initial_comment="Draft attached",
    )
    assert [c.method for c in sandbox.calls[1:]] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    # Slack answers the completion with ids and titles only; the rest comes from files.info.
    assert response["files"] == [{"id": response["file"]["id"], "title": "INC-1 post-mortem draft"}]
    [upload] = sandbox.uploaded_files()
    assert upload.content == "# Post-mortem\n\nüñí | ok\n".encode()
    # Slack shares the file after it answers the completion (the sandbox 0.2 s later by default).
    assert not sandbox.thread("C0INCIDENT", parent["ts"]) and web.files_info(file=upload.id)["file"]["shares"] == {}
    [share] = sandbox.wait_for(lambda: sandbox.thread("C0INCIDENT", parent["ts"]), what="the share")
    assert share.text == "Draft attached" and share.files[0]["name"] == "INC-1-postmortem.md"
    info = web.files_info(file=upload.id)["file"]
    assert info["permalink"].endswith(f"/{upload.id}/INC-1-postmortem.md") and info["size"] == len(upload.content)


def test_the_upload_url_takes_a_multipart_form_too_and_refuses_unknown_urls(sandbox):
    web = client(sandbox)
    answer = web.files_getUploadURLExternal(filename="notes.txt", length=5)
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        answer["upload_url"], data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request) as reply:
        assert (reply.status, reply.read()) == (200, b"OK - 5")
    web.files_completeUploadExternal(files=[{"id": answer["file_id"], "title": "notes"}], channel_id="C0INCIDENT")
    assert sandbox.uploaded_files()[0].content == b"hello"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{sandbox.base_url}/upload/v1/nope", data=b"x"))
    assert refused.value.code == 404


def test_completing_an_upload_whose_bytes_never_arrived_is_refused(sandbox):
    web = client(sandbox)
    answer = web.files_getUploadURLExternal(filename="draft.md", length=10)
    with pytest.raises(SlackApiError) as refused:
        web.files_completeUploadExternal(files=[{"id": answer["file_id"]}], channel_id="C0INCIDENT")
    assert refused.value.response["error"] == "file_not_found"
    with pytest.raises(SlackApiError) as zero:
        web.files_getUploadURLExternal(filename="draft.md", length=0)
    assert zero.value.response["error"] == "missing_argument"
    with pytest.raises(SlackApiError) as unknown:
        web.files_info(file="F404")
    assert unknown.value.response["error"] == "file_not_found"


def test_sharing_into_a_channel_the_bot_is_not_in_is_refused(sandbox):
    web = client(sandbox)
    answer = web.files_getUploadURLExternal(filename="a.md", length=1)
    urllib.request.urlopen(urllib.request.Request(answer["upload_url"], data=b"a"))
    with pytest.raises(SlackApiError) as refused:
        web.files_completeUploadExternal(files=[{"id": answer["file_id"]}], channel_id="C0GENERAL")
    assert refused.value.response["error"] == "not_in_channel"
    assert sandbox.uploaded_files() == []


def test_uploading_needs_files_write():
    with SlackSandbox(scopes=DEFAULT_SCOPES - {"files:write"}) as sandbox:
        with pytest.raises(SlackApiError) as refused:
            client(sandbox).files_upload_v2(channel="C0INCIDENT", filename="a.md", content="a")
        assert refused.value.response["error"] == "missing_scope"
        assert refused.value.response["needed"] == "files:write"
