"""A LangChain retriever over a running ragtune server's search (`langchain-core` BaseRetriever).

    from api.retriever import RagtuneRetriever

    retriever = RagtuneRetriever(base_url="http://127.0.0.1:8000", collection="handbook", k=4,
                                 filter={"metadata": {"team": "ops"}})
    docs = retriever.invoke("how do I reset the pump?")   # or: await retriever.ainvoke(...)

Each hit becomes a Document whose page_content is the chunk's text and whose metadata holds the
hit's own metadata plus source, page, doc_id, chunk_id and score (these win over a metadata key of
the same name). Search errors raise api.client.RagtuneError.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, PrivateAttr, SecretStr

from .client import RagtuneClient, SearchMode
from .schemas import HitOut


class RagtuneRetriever(BaseRetriever):
    """Documents from ragtune's `POST /v1/collections/{collection}/search`."""

    base_url: str = Field(description="the server's root, e.g. http://127.0.0.1:8000")
    collection: str = Field(description="the collection searched")
    k: int = Field(5, ge=1, le=100, description="documents returned")
    mode: SearchMode | None = Field(None, description="hybrid, dense or keyword; default: the "
                                    "server's RAGTUNE_SEARCH_MODE")
    filter: dict[str, Any] | None = Field(None, description='the search filter: {"source": ..., '
                                          '"doc_id": ..., "metadata": {"key": value}}')
    api_key: SecretStr | None = Field(None, description="sent as a Bearer token")
    timeout: float = Field(30.0, gt=0, description="seconds per request")

    _client: RagtuneClient | None = PrivateAttr(default=None)

    def _search_client(self) -> RagtuneClient:
        if self._client is None:
            key = self.api_key.get_secret_value() if self.api_key is not None else None
            self._client = RagtuneClient(self.base_url, api_key=key, timeout=self.timeout)
        return self._client

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self._search_client().search(self.collection, query, k=self.k, mode=self.mode,
                                            filter=self.filter)
        return [to_document(h) for h in hits]

    async def _aget_relevant_documents(
            self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        hits = await self._search_client().asearch(self.collection, query, k=self.k,
                                                   mode=self.mode, filter=self.filter)
        return [to_document(h) for h in hits]


def to_document(hit: HitOut) -> Document:
    return Document(page_content=hit.text, metadata={
        **hit.metadata, "source": hit.source, "page": hit.page, "doc_id": hit.doc_id,
        "chunk_id": hit.chunk_id, "score": hit.score})
