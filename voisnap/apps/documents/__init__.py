"""Documents the agent can search (issue 14; docs/documents.md): uploads over REST
(``rest``, ``upload``), chunking (``chunking``) and background indexing claimed by one
process (``indexer``), with ``DocumentUploaded`` and ``DocumentIndexed`` on the
notifications hub. The search itself is the store's (``storage.sql_documents``), called
by the agents' ``search_documents`` tool (``agents.documents``)."""

from .indexer import Indexer
from .rest import DocumentsRest

__all__ = ["DocumentsRest", "Indexer"]
