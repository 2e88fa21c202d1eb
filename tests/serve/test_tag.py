"""POST /v1/tag: the pretrained tagger over HTTP (only when the server is started with one)."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from earmark.serve.app import ServeSettings, create_app

from ..conftest import shared_weights

RAIL = {"Train", "Rail transport", "Railroad car, train wagon", "Subway, metro, underground"}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tag-uploads")


@pytest.fixture(scope="module")
def client(trained_run: Path, weights_env: Path, uploads: Path) -> TestClient:
    return TestClient(create_app(trained_run, ServeSettings(tagger="mn04_as", max_duration_s=30.0,
                                                            tmp_dir=str(uploads))))


def test_tag_endpoint_has_the_cli_shape(client: TestClient, uploads: Path):
    metro = shared_weights("metro_station-paris.wav")
    with open(metro, "rb") as f:
        r = client.post("/v1/tag?top=5", files={"file": ("metro.wav", f, "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "metro.wav" and len(body["tags"]) == 5
    assert {t["label"] for t in body["tags"]} & RAIL
    assert body["tags"][0]["score"] >= body["tags"][-1]["score"] and "segments" not in body
    r = client.post("/v1/tag?top=2&segments=true&filename=raw.wav", content=metro.read_bytes())
    assert r.status_code == 200 and r.json()["segments"][0]["tags"][0]["label"] == "Train"
    assert list(uploads.iterdir()) == []  # every request's temporary folder is gone
    assert client.post("/v1/predict", content=metro.read_bytes()).status_code == 200  # the run still serves


def test_tag_endpoint_refuses_bad_input(client: TestClient):
    r = client.post("/v1/tag", files={"file": ("x.wav", b"this is not audio", "audio/wav")})
    assert r.status_code == 422 and r.json()["error"] == "not_audio"
    r = client.post("/v1/tag?top=0", content=b"RIFF")
    assert r.status_code == 422 and r.json()["error"] == "bad_parameter"


def test_no_tag_endpoint_without_a_tagger(trained_run: Path):
    assert TestClient(create_app(trained_run)).post("/v1/tag", content=b"x").status_code == 404
