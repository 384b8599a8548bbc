"""The object store in S3-compatible object storage (AWS S3, MinIO, Ceph, moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from incidents.artifacts.ports import StoredObject

_MISSING = ("NoSuchKey", "404", "NotFound")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


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

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        if self.exists(key):
            return
        # Multipart above boto3's threshold: the file is streamed, never read whole.
        self._client.upload_file(
            str(path), self._bucket, self._prefix + key, ExtraArgs={"ContentType": content_type}
        )

    def get(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        data: bytes = answer["Body"].read()
        return data

    def get_file(self, key: str, path: Path) -> bool:
        if not self.exists(key):
            return False
        self._client.download_file(self._bucket, self._prefix + key, str(path))
        return True

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=self._prefix + key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        # S3 answers 204 for a key that is not there as well.
        self._client.delete_object(Bucket=self._bucket, Key=self._prefix + key)

    def listing(self) -> list[StoredObject]:
        found = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self._prefix) :]
                if key and "/" not in key:
                    modified = int(item["LastModified"].timestamp() * 1_000_000)
                    found.append(StoredObject(key, int(item["Size"]), modified))
        return sorted(found, key=lambda o: o.key)
