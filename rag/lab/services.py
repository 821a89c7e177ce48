"""The lab's services over one library and its providers, built the same way for the pages and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from providers import Provider
from rag.lab.assistants import AssistantService
from rag.lab.checks import CheckService, TestSetService
from rag.lab.compare import CompareService, VoteService
from rag.lab.prices import price_table
from rag.library import Library
from rag.search.rewrite import rewriter_from


@dataclass
class Lab:
    """Assistants, comparisons with votes, test sets and check runs."""

    assistants: AssistantService
    compare: CompareService
    votes: VoteService
    sets: TestSetService
    checks: CheckService


def open_lab(library: Library, providers: Mapping[str, Provider]) -> Lab:
    """The lab over a library (its database, retriever and access rules) and the providers."""
    settings = library.settings
    assistants = AssistantService(library.engine, library.access, library.actor)
    prices = price_table(settings)
    rewriter = rewriter_from(settings)
    sets = TestSetService(library.engine, library.access, library.actor)
    return Lab(
        assistants=assistants,
        compare=CompareService(
            library.retriever,
            providers,
            assistants,
            library.scope,
            prices,
            rewriter=rewriter,
            timeout_s=settings.lab_timeout_s,
        ),
        votes=VoteService(library.engine, assistants, library.actor),
        sets=sets,
        checks=CheckService(
            library.engine,
            library.retriever,
            providers,
            assistants,
            sets,
            library.scope,
            prices,
            rewriter=rewriter,
        ),
    )
