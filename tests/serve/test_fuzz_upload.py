"""Fuzzing the upload endpoint: hostile files (raw and multipart) and hostile multipart bodies end in a
200 with an answer or a 4xx with the error shape; never a 500, a hang or a leftover temporary file."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark.serve.app import ServeSettings, create_app

from ..audio.test_fuzz_decode import time_limit
from ..fuzz_cases import hostile_files


@pytest.fixture(scope="module")
def fuzz_client(fsdd_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Path]:
    tmp = tmp_path_factory.mktemp("fuzz-uploads")
    app = create_app(fsdd_run, ServeSettings(max_upload_bytes=200_000, max_duration_s=30.0, tmp_dir=str(tmp)))
    return TestClient(app, raise_server_exceptions=False), tmp


def check_answer(r) -> int:
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text[:300])
    body = r.json()
    if r.status_code == 200:
        assert body["label"] in body["probabilities"]
    else:
        assert set(body) == {"error", "detail"} and body["detail"]
    return r.status_code


def post_case(client: TestClient, ext: str, data: bytes, raw: bool) -> int:
    with time_limit(20):
        if raw:
            return check_answer(client.post(f"/v1/predict?filename=f{ext}", content=data))
        return check_answer(client.post("/v1/predict", files={"file": (f"f{ext}", data, "application/octet-stream")}))


FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@FUZZ
@given(case=hostile_files(), raw=st.booleans())
def test_hostile_files_get_an_answer_or_a_4xx(fuzz_client, case: tuple[str, bytes], raw: bool):
    client, tmp = fuzz_client
    post_case(client, *case, raw=raw)
    assert list(tmp.iterdir()) == []


@FUZZ
@given(boundary=st.binary(min_size=1, max_size=70).filter(lambda b: not set(b) & set(b"\r\n\0")),
       body=st.binary(max_size=3000),
       ctype=st.sampled_from([b"multipart/form-data; boundary=", b"multipart/form-data;boundary=",
                              b"multipart/form-data", b"audio/wav", b""]))
def test_hostile_multipart_bodies_get_a_4xx(fuzz_client, boundary: bytes, body: bytes, ctype: bytes):
    client, tmp = fuzz_client
    headers = {"content-type": ctype + boundary if ctype.endswith(b"=") else ctype}
    with time_limit(20):
        check_answer(client.post("/v1/predict", content=b"--" + boundary + b"\r\n" + body, headers=headers))
    assert list(tmp.iterdir()) == []
