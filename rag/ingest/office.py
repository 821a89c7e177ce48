"""Office documents: Word (DOCX), OpenDocument text (ODT) and RTF.

DOCX and ODT are ZIP archives, checked against decompression bombs before anything is unpacked
(``rag.ingest.archive``); their headings become Markdown '#' lines and their tables one line per
row (``rag.ingest.blocks``). One module per format; this one names them together.
"""

from rag.ingest.archive import DOCX_MIME, ODT_MIME, RTF_MIME
from rag.ingest.odt import extract_odt
from rag.ingest.rtf import extract_rtf
from rag.ingest.word import extract_docx

__all__ = ["DOCX_MIME", "ODT_MIME", "RTF_MIME", "extract_docx", "extract_odt", "extract_rtf"]
