"""The object store in S3-compatible object storage (AWS S3, MinIO, Ceph, moto)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from incidents.artifacts.ports import ObjectStoreError, StoredObject

_MISSING = ("NoSuchKey", "404", "NotFound")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


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
        self._where = f"s3://{bucket}" + (f" at {endpoint_url}" if endpoint_url else "")
        # Set once the bucket answered: a 404 for a key then means the key is missing.
        self._bucket_seen = False

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """Every failure of the store as one :class:`ObjectStoreError` line."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            hint = (
                "; create the bucket or fix IM_ARTIFACTS_S3_BUCKET"
                if code in ("NoSuchBucket", "404")
                else ""
            )
            raise ObjectStoreError(
                f"object store {self._where}: {code or 'error'} {message}".rstrip() + hint
            ) from None
        except (BotoCoreError, Boto3Error, OSError) as exc:
            # BotoCoreError covers unreachable endpoints and missing credentials; boto3's
            # own errors (S3UploadFailedError) wrap a failed transfer. The message names
            # neither keys nor secrets.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ObjectStoreError(f"object store {self._where}: {reason}") from None

    def _missing(self, exc: ClientError) -> bool:
        """Whether ``exc`` says the key is missing, rather than the bucket (a HEAD of a
        key in a missing bucket is a bare 404 as well, so the bucket is asked once)."""
        code = _code(exc)
        if code not in _MISSING:
            return False
        if not self._bucket_seen:
            self._client.head_bucket(Bucket=self._bucket)
            self._bucket_seen = True
        return True

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.exists(key):
            return  # content-addressed: the same key holds the same bytes
        with self._reported():
            self._client.put_object(
                Bucket=self._bucket, Key=self._prefix + key, Body=data, ContentType=content_type
            )

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        if self.exists(key):
            return
        # Multipart above boto3's threshold: the file is streamed, never read whole.
        with self._reported():
            self._client.upload_file(
                str(path), self._bucket, self._prefix + key, ExtraArgs={"ContentType": content_type}
            )

    def get(self, key: str) -> bytes | None:
        with self._reported():
            try:
                answer = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
            except ClientError as exc:
                if self._missing(exc):
                    return None
                raise
            data: bytes = answer["Body"].read()
            return data

    def get_file(self, key: str, path: Path) -> bool:
        if not self.exists(key):
            return False
        with self._reported():
            self._client.download_file(self._bucket, self._prefix + key, str(path))
        return True

    def exists(self, key: str) -> bool:
        with self._reported():
            try:
                self._client.head_object(Bucket=self._bucket, Key=self._prefix + key)
            except ClientError as exc:
                if self._missing(exc):
                    return False
                raise
            return True

    def delete(self, key: str) -> None:
        # S3 answers 204 for a key that is not there as well.
        with self._reported():
            self._client.delete_object(Bucket=self._bucket, Key=self._prefix + key)

    def listing(self) -> list[StoredObject]:
        found = []
        with self._reported():
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
