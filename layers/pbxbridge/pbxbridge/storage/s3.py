"""The recordings archive on S3."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, BinaryIO

import boto3
from botocore.config import Config


@lru_cache(maxsize=1)
def s3_client() -> Any:
    # SigV4 everywhere: presigned URLs for buckets in newer regions need it.
    return boto3.client("s3", config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}))


class S3RecordingArchive:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, key: str, body: BinaryIO, content_type: str) -> None:
        # A managed, streamed (multipart when large) upload: the file is never held whole in memory.
        self._client.upload_fileobj(body, self._bucket, key, ExtraArgs={"ContentType": content_type})

    def url_for(self, key: str, seconds: int) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=seconds
            )
        )
