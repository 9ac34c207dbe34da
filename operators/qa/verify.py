"""Verify: the draft → the answer the user gets, every sentence checked against its citations.

Deltas of the draft pass through unchanged (a page shows them while the model writes);
the Draft becomes the Answer: unsupported sentences removed (and listed, with why),
citations renumbered with a quote and the character span in the source document, or an
abstention with the closest sources when nothing in the documents supports an answer.
"""
from __future__ import annotations

import time
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator
from operators.qa.assemble import NOT_FOUND
from operators.qa.verify_rules import check
from schemas.documents import Answer, AnswerDelta, AskEvent, Draft, DraftEvent

CLOSEST = " The closest passages are listed below."
NO_DOCUMENTS = "No document you may read matches this question."


class VerifyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6  # share of content words supported


class Verify(Operator[DraftEvent, AskEvent]):
    kind = "verify"
    input_type = DraftEvent
    output_type = AskEvent
    Config = VerifyConfig

    async def process(self, event: DraftEvent, ctx: Context) -> AsyncIterator[AskEvent]:
        if isinstance(event, AnswerDelta):
            yield event
            return
        yield self.verified(event)

    def verified(self, draft: Draft) -> Answer:
        started = time.perf_counter()
        query, request_id = draft.query, draft.query.ask.request_id
        if query.clarify:
            return Answer(request_id=request_id, text=query.clarify, outcome="clarify",
                          query=query.query, timings=draft.timings)
        checked = check(draft.text, draft.passages, self.config.threshold, query.query)
        timings = {**draft.timings, "verify_ms": (time.perf_counter() - started) * 1000}
        if checked.abstained:
            text = NOT_FOUND + CLOSEST if draft.passages else NO_DOCUMENTS
            return Answer(request_id=request_id, text=text, outcome="abstained",
                          sources=draft.passages, removed=checked.removed, query=query.query,
                          timings=timings)
        return Answer(request_id=request_id, text=checked.text, citations=checked.citations,
                      sources=draft.passages, removed=checked.removed, query=query.query,
                      timings=timings)
