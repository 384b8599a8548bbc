"""The object store in S3-compatible object storage (AWS S3, MinIO, Ceph, moto)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


class S3ObjectStore:
    """:class:`incidents.artifacts.ports.ObjectStore` on one bucket, under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "artifacts/",
        client: Any = None,
    ) -> None:
        # Credentials come from boto3's usual chain (environment, profile, instance role).
        self._client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        self._bucket = bucket
        self._prefix = prefix

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.exists(key):
            return  # content-addressed: the same key holds the same bytes
        self._client.put_object(
            Bucket=self._bucket, Key=self._prefix + key, Body=data, ContentType=content_type
        )

    def get(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        data: bytes = answer["Body"].read()
        return data

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=self._prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True
