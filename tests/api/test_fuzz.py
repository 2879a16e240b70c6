"""Schema fuzzing (schemathesis over the OpenAPI schema): whatever a client sends that the schema
allows, or nearly allows, the API answers without a server error, and every error is JSON.

Bounded for `make test`: a few examples per operation, against a scripted generator (no model is
loaded) and a small collection; operations that start training are left to their own tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import IngestPipeline

schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from api.app import create_app  # noqa: E402
from api.services import Services  # noqa: E402
from api.settings import Settings  # noqa: E402
from generation.grounding import REFUSAL  # noqa: E402
from tests.fakes import FakeEmbedder  # noqa: E402
from tests.generation.fakes import ScriptedGenerator  # noqa: E402
from tests.helpers import LOCAL_URL, text_doc  # noqa: E402

SKIP = {("POST", "/v1/tuning/jobs"), ("POST", "/v1/tuning/jobs/{job_id}/resume")}


def _app(root: Path) -> TestClient:
    s = Settings(data_dir=root / "data", chunk_size=64, chunk_overlap=8, generator="scripted",
                 answer_style="span", answerability=False, max_new_tokens=8)
    svc = Services(s, embedder=FakeEmbedder(), generator=ScriptedGenerator(lambda _: REFUSAL))
    svc.create_collection("kb")
    IngestPipeline.for_collection(svc.collection("kb"), svc.embedder).run(
        [text_doc("a.txt", "Pumps move water uphill.", "txt")])
    return TestClient(create_app(s, svc), base_url=LOCAL_URL, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with _app(tmp_path_factory.mktemp("fuzz")) as c:
        yield c


def _schema() -> object:
    import tempfile

    with _app(Path(tempfile.mkdtemp())) as c:
        spec = c.get("/openapi.json").json()
    loaded = schemathesis.openapi.from_dict(spec)
    # valid inputs and invalid ones (wrong types, missing fields, out-of-range values)
    loaded.config.generation.update(modes=list(schemathesis.GenerationMode))
    return loaded


schema = _schema()


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_input_is_a_server_error(case: object, client: TestClient) -> None:
    if (case.method.upper(), case.path) in SKIP:  # type: ignore[attr-defined]
        pytest.skip("starts a training run; covered by test_tuning_http")
    kwargs = case.as_transport_kwargs(base_url=LOCAL_URL)  # type: ignore[attr-defined]
    kwargs.pop("base_url", None)
    method, url = kwargs.pop("method"), kwargs.pop("url")
    response = client.request(method, url, **{k: v for k, v in kwargs.items()
                                               if k in ("headers", "params", "json", "content",
                                                        "data", "files", "cookies")})
    assert response.status_code < 500, (method, url, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json")
        assert "detail" in response.json()
