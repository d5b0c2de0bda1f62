"""`files.*`: the three-step external upload (get an upload URL, send the bytes there, complete
the upload into channels) and `files.info`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from bot.sandbox.slack.constants import BOT_ID, BOT_USER_ID, MAX_TEXT
from bot.sandbox.slack.core import SandboxCore, SlackError, _short_id
from bot.sandbox.slack.workspace import Call, Message, SandboxFile


def _multipart_file(content_type: str, body: bytes) -> bytes | None:
    """The first file part of a multipart/form-data body (what `curl -F file=@x` sends)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload
    return None


class FilesMethods(SandboxCore):
    """files.* (lock held) and the upload URL."""

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = str(params.get("filename") or "")
        if not filename:
            raise SlackError("invalid_arguments")
        try:
            length = int(params.get("length") or 0)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        if length <= 0:
            raise SlackError("missing_argument")  # Slack: "typically only when length is 0"
        file_id = self._new_id("F")
        token = _short_id(f"upload{file_id}", 16)
        self._files[file_id] = SandboxFile(file_id, filename, length, int(time.time()))
        self._upload_tokens[token] = file_id
        return {"upload_url": f"{self.base_url}/upload/v1/{token}", "file_id": file_id}

    def _handle_upload(self, token: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The upload URL: raw bytes or a multipart form; 200 "OK - <size>" as files.slack.com answers."""
        with self._lock:
            file_id = self._upload_tokens.get(token)
            content: bytes | None = body
            content_type = headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                content = _multipart_file(content_type, body)
            if file_id is None or content is None:
                self._record(Call("upload", {"token": token}, {"ok": False, "error": "not_found"}, 404, time.time()))
                return 404, {"Content-Type": "text/plain"}, b"Not Found"
            self._files[file_id] = replace(self._files[file_id], content=content)
            self._record(Call("upload", {"file_id": file_id, "size": len(content)}, {"ok": True}, 200, time.time()))
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, f"OK - {len(content)}".encode()

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        files = self._json_param(params, "files", "invalid_arguments")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise SlackError("invalid_arguments")
        uploads = []
        for entry in files:
            upload = self._files.get(str(entry["id"]))
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            uploads.append(replace(upload, title=str(entry.get("title") or upload.name), completed=True))
        channel_ids = [str(params["channel_id"])] if params.get("channel_id") else []
        channel_ids += [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("thread_ts") and len(channel_ids) != 1:
            raise SlackError("invalid_arguments")  # a thread reply goes to exactly one channel
        targets = [self._post_target(c) for c in channel_ids]
        for conv in targets:
            self._require_postable(conv)
        comment = str(params.get("initial_comment") or "")
        if len(comment) > MAX_TEXT:
            raise SlackError("msg_too_long")
        for upload in uploads:
            self._files[upload.id] = replace(upload, channels=tuple(c.id for c in targets))
        for conv in targets:
            thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
            ts = self._next_ts()
            self._add_message(
                Message(
                    channel=conv.id,
                    ts=ts,
                    user=BOT_USER_ID,
                    text=comment,
                    thread_ts=thread_ts,
                    bot_id=BOT_ID,
                    via="files.completeUploadExternal",
                    files=[self._files[u.id].to_api() for u in uploads],
                )
            )
        return {"files": [{"id": u.id, "title": u.title} for u in uploads]}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = self._files.get(str(params.get("file") or ""))
        if upload is None or not upload.completed:
            raise SlackError("file_not_found")
        return {"file": upload.to_api(), "comments": [], "response_metadata": {"next_cursor": ""}}
