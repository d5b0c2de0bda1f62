"""`files.*`: the three-step external upload (get an upload URL, send the bytes there, complete
the upload into channels) and `files.info`.
"""

from __future__ import annotations

import threading
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
            self._files[upload.id] = upload
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        ids = [u.id for u in uploads]
        channels = [c.id for c in targets]
        # Slack answers `ok` at once and shares the file later, or (rarely) never.
        if self._unshared_left > 0:
            self._unshared_left -= 1
        elif self._share_delay_s <= 0:
            self._share(ids, channels, comment, thread_ts)
        else:
            timer = threading.Timer(self._share_delay_s, self._share_later, args=(ids, channels, comment, thread_ts))
            timer.daemon = True
            timer.start()
        return {"files": [{"id": u.id, "title": u.title} for u in uploads]}

    def _share_later(self, ids: list[str], channels: list[str], comment: str, thread_ts: str | None) -> None:
        with self._lock:
            self._share(ids, channels, comment, thread_ts)

    def _share(self, ids: list[str], channels: list[str], comment: str, thread_ts: str | None) -> None:
        """The message that shows the files in each channel (lock held); a deleted file is not shown."""
        live = [self._files[i] for i in ids if i in self._files and not self._files[i].deleted]
        if not live:
            return
        for channel in channels:
            ts = self._next_ts()
            for upload in live:
                current = self._files[upload.id]
                self._files[upload.id] = replace(
                    current, channels=(*current.channels, channel), shares=(*current.shares, (channel, ts, thread_ts))
                )
            self._add_message(
                Message(
                    channel=channel,
                    ts=ts,
                    user=BOT_USER_ID,
                    text=comment,
                    thread_ts=thread_ts,
                    bot_id=BOT_ID,
                    via="files.completeUploadExternal",
                    files=[self._files[u.id].to_api() for u in live],
                )
            )

    def share_uploads(self, after_s: float = 0.2, *, never: int = 0) -> None:
        """How Slack shares completed uploads from now on: `after_s` later (0: before it answers),
        and the next `never` completions not at all (`ok: true` all the same)."""
        with self._lock:
            self._share_delay_s = after_s
            self._unshared_left = never

    def _files_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file") or "")
        upload = self._files.get(file_id)
        if upload is None or upload.deleted:
            raise SlackError("file_not_found")
        self._files[file_id] = replace(upload, deleted=True)
        # The sharing message stays, with the file shown as deleted (a tombstone), as in Slack.
        for messages in self._messages.values():
            for i, message in enumerate(messages):
                if any(f.get("id") == file_id for f in message.files):
                    files = [
                        {"id": file_id, "mode": "tombstone"} if f.get("id") == file_id else f for f in message.files
                    ]
                    messages[i] = replace(message, files=files)
        return {}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = self._files.get(str(params.get("file") or ""))
        if upload is None or not upload.completed or upload.deleted:
            raise SlackError("file_not_found")
        return {"file": upload.to_api(), "comments": [], "response_metadata": {"next_cursor": ""}}
