"""The few facts of a list blob that the registry rules need.

Parsing a list is the expensive part of reading it; these facts are what the
verifier keeps (and caches by blob id) once a blob has parsed strictly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# How far ahead of the reference time a list's dc:date:created may lie (clock
# skew between an endorser and a server) before it counts as in the future.
CREATED_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ListFacts:
    identifier: str
    version: str
    created: datetime
    expires: datetime
    images: tuple[str, ...]
    endorser_dn: str
    endorser_ca: str


def list_facts(data: bytes, *, source: str, max_size: int) -> ListFacts:
    """Parse a list blob strictly (raises ``InvalidDocumentError``) and keep its facts."""
    from gitreg.model.imagelist import parse_imagelist

    imagelist = parse_imagelist(data, source=source, max_size=max_size)
    return ListFacts(
        identifier=imagelist.identifier,
        version=imagelist.version,
        created=imagelist.created,
        expires=imagelist.expires,
        # Lower-case, as sites and statements name images: one image whatever its case.
        images=tuple(image.identifier.lower() for image in imagelist.images),
        endorser_dn=imagelist.endorser_dn,
        endorser_ca=imagelist.endorser_ca,
    )
